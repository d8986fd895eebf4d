#!/usr/bin/env python3
"""A peer application that collects a consumer's consent through the agent
(slixmpp, for tests/e2e_consent.rs).

It logs in, runs get_authorize_uri, prints the answer, waits for the agent's
consent notification, then reads data for the first PRM granted with
get_history, and exits. Every step prints ONE JSON line on stdout (flushed), so
the Rust test can drive a browser in between:

  {"event": "authorize_uri", "answer": {...}}
  {"event": "notification", "type": "chat", "from": "...", "body": "...",
   "usage_points": [...], "state": "..." | null, "xml": "<message .../>"}
  {"event": "history", "answer": {...}}

Failures print {"event": "fatal", "reason": "..."} and exit 2.
"""

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
from zoneinfo import ZoneInfo

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import tostring

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
from adhoc import describe  # noqa: E402  (the interop tests' iq summary)

AUTHORIZE_NS = "https://consometers.org/dataconnect#authorize"


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, ca_file):
        super().__init__(jid, password)
        for plugin in ("xep_0030", "xep_0004", "xep_0050"):
            self.register_plugin(plugin)
        if ca_file:
            self.ca_certs = ca_file
        self.enable_direct_tls = False
        self.notifications = asyncio.Queue()
        self.add_event_handler("message", self.on_message)

    def on_message(self, msg):
        x = msg.xml.find("{%s}x" % AUTHORIZE_NS)
        if x is None:
            return
        state = x.find("{%s}state" % AUTHORIZE_NS)
        self.notifications.put_nowait(
            {
                "type": msg["type"],
                "from": str(msg["from"]),
                "body": msg["body"],
                "usage_points": [u.text for u in x.findall("{%s}usage-point" % AUTHORIZE_NS)],
                "state": None if state is None else state.text,
                "xml": tostring(msg.xml),
            }
        )

    async def command(self, agent, node, fields):
        form = self["xep_0004"].make_form(ftype="submit")
        for var, (ftype, value) in fields.items():
            form.add_field(var=var, ftype=ftype, value=value)
        try:
            iq = await self["xep_0050"].send_command(agent, node, action="execute", payload=form, timeout=60)
        except IqError as e:
            return describe(e.iq)
        return describe(iq)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--ca-file")
    parser.add_argument("--agent", required=True, help="the agent's full JID")
    parser.add_argument("--name", required=True)
    parser.add_argument("--logo-url")
    parser.add_argument("--description", required=True, help="lines become <value/> lines")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for the notification")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr)

    peer = Peer(args.jid, args.password, args.ca_file)
    host, port = args.server.rsplit(":", 1)
    peer.connect(host, int(port))
    try:
        await peer.wait_until("session_start", timeout=20)
    except Exception as e:  # noqa: BLE001
        emit("fatal", reason=f"no session: {e!r}")
        sys.exit(2)
    peer.send_presence()

    fields = {
        "name": ("text-single", args.name),
        "description": ("text-multi", args.description),
    }
    if args.logo_url:
        fields["logo_url"] = ("text-single", args.logo_url)
    try:
        answer = await peer.command(args.agent, "get_authorize_uri", fields)
    except IqTimeout:
        emit("fatal", reason="get_authorize_uri timed out")
        sys.exit(2)
    emit("authorize_uri", answer=answer)
    if answer.get("type") != "result":
        sys.exit(2)

    try:
        note = await asyncio.wait_for(peer.notifications.get(), args.wait)
    except asyncio.TimeoutError:
        emit("fatal", reason=f"no notification within {args.wait} s")
        sys.exit(2)
    emit("notification", **note)

    # The latest days Enedis has: the three days before today, Paris time.
    paris = ZoneInfo("Europe/Paris")
    today = datetime.datetime.now(paris).date()
    start = today - datetime.timedelta(days=3)

    def midnight(day):
        return datetime.datetime.combine(day, datetime.time(), paris).isoformat()

    prm = note["usage_points"][0]
    history = await peer.command(
        args.agent,
        "get_history",
        {
            "identifier": ("text-single", f"urn:dev:prm:{prm}_consumption/energy/active/daily"),
            "start_time": ("text-single", midnight(start)),
            "end_time": ("text-single", midnight(today)),
        },
    )
    emit("history", answer=history)
    peer.disconnect()
    await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main())
