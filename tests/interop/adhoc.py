#!/usr/bin/env python3
"""An independent XMPP peer (slixmpp) for the interop tests of quoalise-agent.

It logs in, runs ONE action against the agent, prints ONE JSON document on
stdout and exits 0; the Rust test parses it. Failures to log in exit 2 with a
JSON {"fatal": "..."}.

Actions:
  commands                   disco#items on the commands node (xep_0050.get_commands)
  info [NODE]                disco#info on the agent (or a node)
  ping                       XEP-0199 ping (xep_0199.ping)
  multistage NODE [k=v ...]  start_command (empty execute), then fill the form the
                             agent sent with k=v and complete_command; with
                             --second-action execute|next the second step uses that
                             action instead of complete; with --pages, while an
                             answer is `executing` with a `next` action (an answer
                             in pages), sends `next` with the page's form as Gajim
                             does, and reports every page as a step
  cancel NODE                start_command, then cancel_command
  single NODE [k=v ...]      one execute carrying the filled form (as the Quoalise
                             client does)
  raw XML                    send an <iq/> verbatim (its id must be "raw1") and
                             report the answer
Values "a\\nb" (with a real newline) become several <value/> lines.

Every answer is reported as {"type": "result"|"error", ...}: for results the
command's status, sessionid, actions, notes, form and payloads (as XML); for
errors the condition, error type, text and the <error/> XML.
"""

import argparse
import asyncio
import json
import logging
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import tostring

COMMANDS_NS = "http://jabber.org/protocol/commands"
DATA_NS = "jabber:x:data"


def describe_form(form):
    if form is None:
        return None
    fields = []
    for var, field in form.get_fields().items():
        fields.append(
            {
                "var": var,
                "type": field["type"],
                "label": field["label"],
                "required": bool(field["required"]),
                "values": [v.text or "" for v in field.xml.findall("{%s}value" % DATA_NS)],
                "options": [o["value"] for o in field.get_options()],
            }
        )
    return {
        "type": form["type"],
        "title": form["title"],
        "instructions": form["instructions"],
        "fields": fields,
    }


def describe(iq):
    """A JSON-able summary of an iq answer."""
    if iq["type"] == "error":
        error = iq["error"]
        return {
            "type": "error",
            "condition": error["condition"],
            "etype": error["type"],
            "text": error["text"],
            "xml": tostring(error.xml),
        }
    out = {"type": iq["type"]}
    command_xml = iq.xml.find("{%s}command" % COMMANDS_NS)
    if command_xml is not None:
        command = iq["command"]
        form_xml = command_xml.find("{%s}x" % DATA_NS)
        actions_xml = command_xml.find("{%s}actions" % COMMANDS_NS)
        out.update(
            {
                "node": command["node"],
                "status": command["status"],
                "sessionid": command["sessionid"],
                "actions": None
                if actions_xml is None
                else {
                    "execute": actions_xml.get("execute"),
                    "available": [child.tag.split("}")[1] for child in actions_xml],
                },
                "notes": [
                    {"type": n.get("type"), "text": n.text}
                    for n in command_xml.findall("{%s}note" % COMMANDS_NS)
                ],
                "form": describe_form(command["form"]) if form_xml is not None else None,
                "payloads": [
                    tostring(child)
                    for child in command_xml
                    if child.tag
                    not in (
                        "{%s}x" % DATA_NS,
                        "{%s}actions" % COMMANDS_NS,
                        "{%s}note" % COMMANDS_NS,
                    )
                ],
            }
        )
    else:
        out["xml"] = tostring(iq.xml)
    return out


def parse_fields(pairs):
    fields = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"field '{pair}' is not key=value")
        key, value = pair.split("=", 1)
        fields[key] = value
    return fields


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, ca_file):
        super().__init__(jid, password)
        for plugin in ("xep_0030", "xep_0004", "xep_0050", "xep_0199"):
            self.register_plugin(plugin)
        if ca_file:
            self.ca_certs = ca_file
        # The test server speaks STARTTLS on its c2s port only.
        self.enable_direct_tls = False

    # --- the multi-stage flow, as slixmpp's xep_0050 drives it -------------

    async def run_flow(self, agent, node, fields, finish, second_action, pages=False):
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        final = loop.create_future()

        def on_final(iq, session):
            if not final.done():
                final.set_result((describe(iq), iq))

        def on_first(iq, session):
            if not first.done():
                first.set_result((describe(iq), iq))
            if iq["type"] == "error":
                return
            session["next"] = on_final
            session["error"] = on_final
            if finish == "cancel":
                session["payload"] = None
                self["xep_0050"].cancel_command(session)
                return
            form = iq["command"]["form"]
            form.set_type("submit")
            form.set_values(fields)
            session["payload"] = form
            if second_action == "complete":
                self["xep_0050"].complete_command(session)
            elif second_action == "next":
                self["xep_0050"].continue_command(session, direction="next")
            else:
                self["xep_0050"].send_command(
                    session["jid"],
                    session["node"],
                    action=second_action,
                    payload=form,
                    sessionid=session["id"],
                    flow=True,
                )

        session = {"next": on_first, "error": on_first}
        self["xep_0050"].start_command(agent, node, session)
        first_answer, first_iq = await asyncio.wait_for(first, 20)
        steps = [first_answer]
        if first_iq["type"] != "error":
            answer, iq = await asyncio.wait_for(final, 20)
            steps.append(answer)
            if pages:
                steps.extend(await self.follow_pages(agent, node, answer, iq))
        return {"steps": steps}

    async def follow_pages(self, agent, node, answer, iq):
        """`next` while the answer offers it, as Gajim's "Next" button: the
        page's form sent back (submit) with action next on the same session."""
        pages = []
        while (
            answer["type"] == "result"
            and answer["status"] == "executing"
            and answer["actions"] is not None
            and "next" in answer["actions"]["available"]
        ):
            if len(pages) >= 1000:
                raise SystemExit("more than 1000 pages")
            form = iq["command"]["form"]
            form.set_type("submit")
            try:
                iq = await self["xep_0050"].send_command(
                    agent,
                    node,
                    action="next",
                    payload=form,
                    sessionid=answer["sessionid"],
                    timeout=20,
                )
            except IqError as e:
                iq = e.iq
            answer = describe(iq)
            pages.append(answer)
        return pages

    async def single(self, agent, node, fields):
        form = self["xep_0004"].make_form(ftype="submit")
        for var, value in fields.items():
            form.add_field(var=var, ftype="text-single", value=value)
        try:
            iq = await self["xep_0050"].send_command(
                agent, node, action="execute", payload=form, timeout=20
            )
        except IqError as e:
            return describe(e.iq)
        return describe(iq)

    async def raw(self, xml):
        loop = asyncio.get_running_loop()
        answer = loop.create_future()

        def on_iq(iq):
            if iq["id"] == "raw1" and iq["type"] in ("result", "error") and not answer.done():
                answer.set_result(describe(iq))

        self.register_handler(
            slixmpp.xmlstream.handler.Callback(
                "raw answer",
                slixmpp.xmlstream.matcher.MatchXPath("{jabber:client}iq"),
                on_iq,
            )
        )
        self.send_raw(xml)
        return await asyncio.wait_for(answer, 20)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--ca-file")
    parser.add_argument("--agent", required=True, help="the agent's full JID")
    parser.add_argument("--second-action", default="complete", choices=["complete", "execute", "next"])
    parser.add_argument("--pages", action="store_true", help="follow `next` through an answer in pages")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("action")
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr)

    peer = Peer(args.jid, args.password, args.ca_file)
    failed = asyncio.get_running_loop().create_future()
    peer.add_event_handler("failed_auth", lambda _: failed.done() or failed.set_result("authentication failed"))
    host, port = args.server.rsplit(":", 1)
    peer.connect(host, int(port))
    started = asyncio.ensure_future(peer.wait_until("session_start", timeout=20))
    done, _ = await asyncio.wait({started, failed}, return_when=asyncio.FIRST_COMPLETED)
    if failed in done or started.exception() is not None:
        print(json.dumps({"fatal": failed.result() if failed.done() else "no session within 20 s"}))
        sys.exit(2)

    action, rest = args.action, args.args
    try:
        if action == "commands":
            try:
                iq = await peer["xep_0050"].get_commands(args.agent, timeout=20)
                result = {
                    "type": "result",
                    "commands": [
                        {"jid": str(jid), "node": node, "name": name}
                        for (jid, node, name) in iq["disco_items"]["items"]
                    ],
                }
            except IqError as e:
                result = describe(e.iq)
        elif action == "info":
            node = rest[0] if rest else None
            try:
                iq = await peer["xep_0030"].get_info(args.agent, node=node, timeout=20)
                info = iq["disco_info"]
                result = {
                    "type": "result",
                    "identities": [list(i) for i in info["identities"]],
                    "features": sorted(info["features"]),
                }
            except IqError as e:
                result = describe(e.iq)
        elif action == "ping":
            try:
                rtt = await peer["xep_0199"].ping(args.agent, timeout=20)
                result = {"type": "result", "rtt": rtt}
            except IqError as e:
                result = describe(e.iq)
        elif action == "multistage":
            result = await peer.run_flow(
                args.agent, rest[0], parse_fields(rest[1:]), "complete", args.second_action, args.pages
            )
        elif action == "cancel":
            result = await peer.run_flow(args.agent, rest[0], {}, "cancel", None)
        elif action == "single":
            result = await peer.single(args.agent, rest[0], parse_fields(rest[1:]))
        elif action == "raw":
            result = await peer.raw(rest[0])
        else:
            raise SystemExit(f"unknown action '{action}'")
    except (IqTimeout, asyncio.TimeoutError):
        result = {"type": "timeout"}
    print(json.dumps(result))
    peer.disconnect()
    await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main())
