#!/usr/bin/env python3
"""The two existing peer families, played by slixmpp against quoalise-agent.

It logs in, runs ONE action, prints ONE JSON document on stdout and exits 0
(2 with {"fatal": ...} when the login fails). The Rust tests (tests/agent_*.rs)
assert on it. Payloads are parsed HERE, in Python, with a SenML resolver
written from RFC 8428 (bn/bt/bu/n/t/u/v), independently of the agent's codec.

Actions:
  history IDENT [START END]   the Quoalise client's exact get_history iq
                              (text-single fields, no sessionid, START/END
                              omitted when not given, as the client does)
  legacy NODE PRM DIRECTION START END
                              the first Data Connect proxy's get_load_curve /
                              get_daily iq
  proxy-app NODE PRM DIRECTION START END
                              the same iq, the answer read as applications
                              written for the first proxy read it: by its
                              record names and its <sampling interval>
  multistage NODE [k=v ...]   slixmpp xep_0050: empty execute, the agent's form,
                              then complete with the form's defaults overridden
                              by k=v; reports the form and the parsed payload
  commands                    disco#items on the commands node
  list                        list_usage_points in one execute
  contract PRM                get_contract in one execute (the usage_point_id
                              field), the <contract> payload read here from its
                              XML (schemas/contract.rng) into "contract"

Answers: {"type": "result", "status", "form", "notes", "data": [parsed <data>]}
or {"type": "error", "condition", "etype", "text", "upstream": {"issuer", "code"},
"missing_scope": the scope named by <missing-scope/>, or null}.
contract adds "contract": {"prm", "generation", "fetched", "segments",
"subscribed_power": {"value", "unit"}, "tariff_option", "off_peak_hours",
"meter_type", "services_level": {"code", "label"}, "contract_start",
"activations": [{"date", "direction"}], "last_changes": [{"of", "date"}],
"address", "unavailable": [{"source", "fields": [...], "code", "text"}]}
(absent parts null or []) to a result, null when it carries no <contract>.
proxy-app adds "app": {"name", "interval", "step", "direction", "records":
[[utc_seconds, value, "YYYY-MM-DDTHH:MM:SSZ"]], "other_names"} to a result.
"""

import argparse
import asyncio
import datetime
import json
import logging
import sys
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

# adhoc.py, next to this file: the slixmpp peer and its multi-stage driver.
from adhoc import Peer, describe, parse_fields

COMMANDS_NS = "http://jabber.org/protocol/commands"
DATA_NS = "jabber:x:data"
QUOALISE_NS = "urn:quoalise:0"
SENML_NS = "urn:ietf:params:xml:ns:senml"


def resolve_senml(sensml):
    """Resolved records of a <sensml> element (RFC 8428 section 4.6)."""
    records = []
    base = {"bn": "", "bt": 0.0, "bu": None}
    raw = []
    for index, element in enumerate(sensml.findall("{%s}senml" % SENML_NS)):
        attrs = dict(element.attrib)
        raw.append(attrs)
        if "bn" in attrs:
            base["bn"] = attrs["bn"]
        if "bt" in attrs:
            base["bt"] = float(attrs["bt"])
        if "bu" in attrs:
            base["bu"] = attrs["bu"]
        name = base["bn"] + attrs.get("n", "")
        time = base["bt"] + float(attrs.get("t", "0"))
        unit = attrs.get("u", base["bu"])
        value = float(attrs["v"]) if "v" in attrs else None
        records.append({"name": name, "time": time, "unit": unit, "value": value})
    return records, raw


def meta_dict(element):
    """<meta> as nested dicts of attributes (children by local name)."""
    if element is None:
        return None
    out = dict(element.attrib)
    for child in element:
        out[child.tag.split("}")[1]] = meta_dict(child)
    return out


def parse_quoalise(xml):
    """Every <data> of a <quoalise> payload: meta, raw senml attributes, records."""
    root = ET.fromstring(xml)
    assert root.tag == "{%s}quoalise" % QUOALISE_NS, root.tag
    out = []
    for data in root.findall("{%s}data" % QUOALISE_NS):
        sensml = data.find("{%s}sensml" % SENML_NS)
        records, raw = resolve_senml(sensml) if sensml is not None else ([], [])
        out.append(
            {
                "meta": meta_dict(data.find("{%s}meta" % QUOALISE_NS)),
                "raw": raw,
                "records": records,
            }
        )
    return out


def parse_contract(xml):
    """A <contract xmlns="urn:quoalise:0"> payload (schemas/contract.rng) as a dict."""
    root = ET.fromstring(xml)
    assert root.tag == "{%s}contract" % QUOALISE_NS, root.tag

    def children(name):
        return root.findall("{%s}%s" % (QUOALISE_NS, name))

    def one(name):
        found = children(name)
        assert len(found) <= 1, "%d <%s> in a contract" % (len(found), name)
        return found[0] if found else None

    def coded(name):
        element = one(name)
        if element is None:
            return None
        return {"code": element.get("code"), "label": element.get("label")}

    def dated(name):
        element = one(name)
        return None if element is None else element.get("date")

    power = one("subscribed-power")
    hours = one("off-peak-hours")
    address = one("address")
    return {
        "prm": root.get("prm"),
        "generation": root.get("generation"),
        "fetched": root.get("fetched"),
        "segments": [s.text for s in children("segment")],
        "subscribed_power": None
        if power is None
        else {"value": power.get("value"), "unit": power.get("unit")},
        "tariff_option": coded("tariff-option"),
        "off_peak_hours": None
        if hours is None
        else {
            "raw": hours.get("raw"),
            "ranges": [
                [r.get("start"), r.get("end")]
                for r in hours.findall("{%s}range" % QUOALISE_NS)
            ],
        },
        "meter_type": coded("meter-type"),
        "services_level": coded("services-level"),
        "contract_start": dated("contract-start"),
        "activations": [
            {"date": a.get("date"), "direction": a.get("direction")}
            for a in children("activation")
        ],
        "last_changes": [
            {"of": c.get("of"), "date": c.get("date")} for c in children("last-change")
        ],
        "address": None if address is None else dict(address.attrib),
        "unavailable": [
            {
                "source": u.get("source"),
                "fields": u.get("fields", "").split(),
                "code": u.get("code"),
                "text": u.text,
            }
            for u in children("unavailable")
        ],
    }


def contract_xml(prm):
    """get_contract in one execute, its usage_point_id filled."""
    return (
        f'<command xmlns="{COMMANDS_NS}" node="get_contract" action="execute">'
        f'<x xmlns="{DATA_NS}" type="submit">'
        f'<field var="usage_point_id" type="text-single"><value>{escape(prm)}</value></field>'
        f"</x></command>"
    )


def summarise(answer):
    """Adds the parsed Quoalise payloads (and upstream error) to an adhoc.py answer."""
    if answer.get("type") == "result":
        answer["data"] = [
            d
            for payload in answer.get("payloads", [])
            if payload.lstrip().startswith("<quoalise")
            for d in parse_quoalise(payload)
        ]
    elif answer.get("type") == "error":
        error = ET.fromstring(answer["xml"])
        upstream = error.find("{%s}upstream-error" % QUOALISE_NS)
        answer["upstream"] = None if upstream is None else dict(upstream.attrib)
        missing = error.find("{%s}missing-scope" % QUOALISE_NS)
        answer["missing_scope"] = None if missing is None else missing.get("scope")
    return answer


async def send_raw_command(peer, agent, command_xml):
    """An iq set carrying `command_xml`, built as the peers build it."""
    iq = peer.Iq()
    iq["type"] = "set"
    iq["to"] = agent
    iq.append(ET.fromstring(command_xml))
    try:
        answer = await iq.send(timeout=60)
    except IqError as e:
        return describe(e.iq)
    return describe(answer)


def history_xml(identifier, start, end):
    """The Quoalise client's get_history <command/> (client.py, verbatim shape)."""
    start_field = (
        f'<field var="start_time" type="text-single"><value>{escape(start)}</value></field>'
        if start
        else ""
    )
    end_field = (
        f'<field var="end_time" type="text-single"><value>{escape(end)}</value></field>'
        if end
        else ""
    )
    return f"""
            <command
              xmlns="http://jabber.org/protocol/commands"
              node="get_history"
              action="execute">
              <x xmlns="jabber:x:data" type="submit">
                <field var="identifier" type="text-single">
                  <value>{escape(identifier)}</value>
                </field>
                {start_field}
                {end_field}
              </x>
            </command>
        """


def legacy_xml(node, prm, direction, start, end):
    """The first Data Connect proxy's get_load_curve / get_daily <command/>."""
    fields = "".join(
        f'<field var="{var}" type="text-single"><value>{escape(value)}</value></field>'
        for var, value in (
            ("usage_point_id", prm),
            ("direction", direction),
            ("start_date", start),
            ("end_date", end),
        )
    )
    return (
        f'<command xmlns="{COMMANDS_NS}" node="{node}" action="execute">'
        f'<x xmlns="{DATA_NS}" type="submit">{fields}</x></command>'
    )


def read_as_proxy_app(payload, node, prm, direction):
    """Reads a get_load_curve / get_daily answer as code written against the
    first Data Connect proxy did: it looks for the records it knows by name,
    urn:dev:prm:<PRM>_<direction>_load (load curve) or
    urn:dev:prm:<PRM>_daily_<direction> (daily energy), adds bt and t for
    their UTC times, and takes the step from <sampling interval>: "P1D" for a
    day, else an ISO 8601 duration of minutes ("PT30M"). Records of any other
    name are not its data (reported in other_names)."""
    root = ET.fromstring(payload)
    data = root.find("{%s}data" % QUOALISE_NS)
    measurement = data.find("{%s}meta/{%s}measurement" % (QUOALISE_NS, QUOALISE_NS))
    interval = measurement.find("{%s}sampling" % QUOALISE_NS).get("interval")
    business = measurement.find("{%s}business" % QUOALISE_NS)
    if node == "get_daily":
        wanted = "urn:dev:prm:%s_daily_%s" % (prm, direction)
        if interval != "P1D":
            raise ValueError("daily answer sampled at %r, not P1D" % interval)
        step = 86400
    else:
        wanted = "urn:dev:prm:%s_%s_load" % (prm, direction)
        if not (interval.startswith("PT") and interval.endswith("M")):
            raise ValueError("load curve sampled at %r, not PT<n>M" % interval)
        step = int(interval[2:-1]) * 60
    records, other_names = [], set()
    name, base_time = None, 0
    for senml in data.find("{%s}sensml" % SENML_NS).findall("{%s}senml" % SENML_NS):
        name = senml.get("bn", name)
        base_time = int(senml.get("bt", base_time))
        if name != wanted:
            other_names.add(name)
            continue
        time = base_time + int(senml.get("t", "0"))
        stamp = datetime.datetime.fromtimestamp(time, datetime.timezone.utc)
        records.append([time, float(senml.get("v")), stamp.strftime("%Y-%m-%dT%H:%M:%SZ")])
    return {
        "name": wanted,
        "interval": interval,
        "step": step,
        "direction": business.get("direction"),
        "records": records,
        "other_names": sorted(other_names),
    }


async def multistage(peer, agent, node, overrides):
    """start_command, then complete_command with the agent's own form: its
    default values, overridden by `overrides`."""
    loop = asyncio.get_running_loop()
    first = loop.create_future()
    final = loop.create_future()

    def on_final(iq, session):
        if not final.done():
            final.set_result(describe(iq))

    def on_first(iq, session):
        if not first.done():
            first.set_result(describe(iq))
        if iq["type"] == "error" or iq["command"]["status"] != "executing":
            return
        session["next"] = on_final
        session["error"] = on_final
        form = iq["command"]["form"]
        values = {var: field["value"] for var, field in form.get_fields().items()}
        values.update(overrides)
        form.set_type("submit")
        form.set_values(values)
        session["payload"] = form
        peer["xep_0050"].complete_command(session)

    session = {"next": on_first, "error": on_first}
    peer["xep_0050"].start_command(agent, node, session)
    first_answer = await asyncio.wait_for(first, 60)
    steps = [first_answer]
    if first_answer["type"] != "error" and first_answer.get("status") == "executing":
        steps.append(summarise(await asyncio.wait_for(final, 60)))
    return {"steps": steps}


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jid", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--server", required=True, help="host:port")
    parser.add_argument("--ca-file")
    parser.add_argument("--agent", required=True, help="the agent's full JID")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("action")
    parser.add_argument("args", nargs="*")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr)

    peer = Peer(args.jid, args.password, args.ca_file)
    failed = asyncio.get_running_loop().create_future()
    peer.add_event_handler(
        "failed_auth", lambda _: failed.done() or failed.set_result("authentication failed")
    )
    host, port = args.server.rsplit(":", 1)
    peer.connect(host, int(port))
    started = asyncio.ensure_future(peer.wait_until("session_start", timeout=30))
    done, _ = await asyncio.wait({started, failed}, return_when=asyncio.FIRST_COMPLETED)
    if failed in done or started.exception() is not None:
        print(json.dumps({"fatal": failed.result() if failed.done() else "no session within 30 s"}))
        sys.exit(2)

    action, rest = args.action, args.args
    try:
        if action == "history":
            identifier = rest[0]
            start = rest[1] if len(rest) > 1 else None
            end = rest[2] if len(rest) > 2 else None
            result = summarise(await send_raw_command(peer, args.agent, history_xml(identifier, start, end)))
        elif action == "legacy":
            result = summarise(await send_raw_command(peer, args.agent, legacy_xml(*rest[:5])))
        elif action == "proxy-app":
            node, prm, direction = rest[0], rest[1], rest[2]
            result = summarise(await send_raw_command(peer, args.agent, legacy_xml(*rest[:5])))
            if result.get("type") == "result":
                payloads = [p for p in result["payloads"] if p.lstrip().startswith("<quoalise")]
                result["app"] = read_as_proxy_app(payloads[0], node, prm, direction)
        elif action == "multistage":
            result = await multistage(peer, args.agent, rest[0], parse_fields(rest[1:]))
        elif action == "list":
            result = summarise(
                await send_raw_command(
                    peer,
                    args.agent,
                    f'<command xmlns="{COMMANDS_NS}" node="list_usage_points" action="execute"/>',
                )
            )
        elif action == "contract":
            result = summarise(await send_raw_command(peer, args.agent, contract_xml(rest[0])))
            if result.get("type") == "result":
                contracts = [
                    p for p in result["payloads"] if p.lstrip().startswith("<contract")
                ]
                assert len(contracts) <= 1, "%d <contract> payloads" % len(contracts)
                result["contract"] = parse_contract(contracts[0]) if contracts else None
        elif action == "commands":
            try:
                iq = await peer["xep_0050"].get_commands(args.agent, timeout=30)
                result = {
                    "type": "result",
                    "commands": [node for (_, node, _) in iq["disco_items"]["items"]],
                }
            except IqError as e:
                result = summarise(describe(e.iq))
        else:
            raise SystemExit(f"unknown action '{action}'")
    except (IqTimeout, asyncio.TimeoutError):
        result = {"type": "timeout"}
    print(json.dumps(result))
    peer.disconnect()
    await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main())
