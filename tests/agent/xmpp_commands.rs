//! The command framework against a real Prosody, with a test-only command set
//! registered through the library's API: single-stage and multi-stage XEP-0050
//! flows (the multi-stage ones driven by slixmpp's xep_0050), disco filtered by
//! authorisation, stanza errors, concurrency and deadlines, bad input.

use crate::common;

use std::time::{Duration, Instant};

use common::prosody::Prosody;
use common::xmpp_harness::*;
use minidom::Element;
use quoalise_agent::xmpp::{Action, Command, NS_COMMANDS, Status};
use serde_json::Value;
use xmpp_parsers::jid::BareJid;

fn echo(fields: &[(&str, &str)]) -> Command {
    Command::execute("echo", Some(submit(fields)))
}

// --- single stage (programmatic peers) -------------------------------------------

#[tokio::test]
async fn a_filled_form_in_the_first_execute_is_answered_completed() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;

    let answer = alice
        .command(echo(&[("text", "hello"), ("direction", "production")]))
        .await
        .unwrap();
    assert_eq!(answer.node.as_deref(), Some("echo"));
    assert_eq!(answer.status, Some(Status::Completed));
    assert!(answer.sessionid.as_deref().is_some_and(|s| !s.is_empty()));
    let form = answer.form.expect("a result form");
    assert_eq!(form.title.as_deref(), Some("Echo"));
    assert_eq!(field_values(&form, "result"), ["Success"]);
    assert_eq!(field_values(&form, "text"), ["hello"]);
    assert_eq!(field_values(&form, "direction"), ["production"]);
    // The payload is the command's, and names the requester's bare JID.
    assert_eq!(answer.payloads.len(), 1);
    assert!(answer.payloads[0].is("echo", "urn:test:echo"));
    assert_eq!(answer.payloads[0].text(), "alice@localhost");
    agent.stop().await;
}

#[tokio::test]
async fn the_quoalise_client_request_shape_is_served() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;

    // Exactly the element the Quoalise client sends (protocol doc), on `echo`.
    let request: Element = r#"<command xmlns="http://jabber.org/protocol/commands" node="echo" action="execute">
    <x xmlns="jabber:x:data" type="submit">
      <field var="text" type="text-single"><value>urn:dev:prm:30001610071843_consumption/power/active/raw</value></field>
      <field var="start_time" type="text-single"><value>2020-03-01T00:00:00+01:00</value></field>
      <field var="end_time" type="text-single"><value>2020-03-08T00:00:00+01:00</value></field>
    </x>
  </command>"#
        .parse()
        .unwrap();
    let answer = Command::from_element(alice.set(request).await.unwrap().unwrap()).unwrap();
    assert_eq!(answer.status, Some(Status::Completed));
    assert_eq!(
        field_values(answer.form.as_ref().unwrap(), "text"),
        ["urn:dev:prm:30001610071843_consumption/power/active/raw"]
    );
    agent.stop().await;
}

#[tokio::test]
async fn slixmpp_single_stage_execute_is_answered_completed() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let slix = Slix::new(&prosody, "alice@localhost/slix");
    let answer = slix
        .run(&[], "single", &["echo", "text=hi", "lines=one\ntwo"])
        .await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert_eq!(answer["status"], "completed", "{answer}");
    let fields = form_fields(&answer["form"]);
    assert_eq!(fields["text"], serde_json::json!(["hi"]));
    // A multi-line value comes back as several <value/> lines.
    assert_eq!(fields["lines"], serde_json::json!(["one", "two"]));
    assert_eq!(
        answer["payloads"][0],
        "<echo xmlns=\"urn:test:echo\">alice@localhost</echo>"
    );
    agent.stop().await;
}

/// `{var: [values]}` of a form described by adhoc.py.
fn form_fields(form: &Value) -> serde_json::Map<String, Value> {
    form["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no fields in {form}"))
        .iter()
        .map(|f| (f["var"].as_str().unwrap().to_owned(), f["values"].clone()))
        .collect()
}

// --- multi stage (Gajim, Psi, slixmpp's xep_0050) --------------------------------

#[tokio::test]
async fn slixmpp_runs_the_multi_stage_flow() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let slix = Slix::new(&prosody, "alice@localhost/slix");

    for second_action in ["complete", "execute", "next"] {
        let flow = slix
            .run(
                &["--second-action", second_action],
                "multistage",
                &["echo", "text=from a form", "direction=production"],
            )
            .await;
        let steps = flow["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{flow}");

        // First: the form to fill, a session, and what to do next.
        let first = &steps[0];
        assert_eq!(first["status"], "executing", "{flow}");
        let sessionid = first["sessionid"].as_str().unwrap();
        assert!(!sessionid.is_empty());
        assert_eq!(first["actions"]["execute"], "complete", "{flow}");
        assert_eq!(
            first["actions"]["available"],
            serde_json::json!(["complete"])
        );
        let form = &first["form"];
        assert_eq!(form["type"], "form");
        assert_eq!(form["title"], "Echo");
        assert_eq!(form["instructions"], "Sends back what you submit");
        let text_field = form["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["var"] == "text")
            .unwrap();
        assert_eq!(text_field["label"], "Text");
        assert_eq!(text_field["required"], true);
        let direction = form["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["var"] == "direction")
            .unwrap();
        assert_eq!(direction["type"], "list-single");
        assert_eq!(direction["values"], serde_json::json!(["consumption"]));
        assert_eq!(
            direction["options"],
            serde_json::json!(["consumption", "production"])
        );

        // Then: the filled form in the same session gives the result.
        let last = &steps[1];
        assert_eq!(last["status"], "completed", "{second_action}: {flow}");
        assert_eq!(last["sessionid"], sessionid);
        let fields = form_fields(&last["form"]);
        assert_eq!(fields["text"], serde_json::json!(["from a form"]));
        assert_eq!(fields["direction"], serde_json::json!(["production"]));
    }
    agent.stop().await;
}

#[tokio::test]
async fn slixmpp_cancels_a_session() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let slix = Slix::new(&prosody, "alice@localhost/slix");
    let flow = slix.run(&[], "cancel", &["echo"]).await;
    let steps = flow["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "executing", "{flow}");
    assert_eq!(steps[1]["type"], "result", "{flow}");
    assert_eq!(steps[1]["status"], "canceled", "{flow}");
    assert_eq!(steps[1]["sessionid"], steps[0]["sessionid"]);
    agent.stop().await;
}

#[tokio::test]
async fn sessions_belong_to_their_requester_and_expire() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |a| a.router_settings_mut().session_ttl = Duration::from_millis(800),
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let alice_phone = Peer::connect(&prosody, "alice", "phone").await;

    let start = |node: &str| Command::execute(node, None);
    let complete = |sid: &str| {
        let mut c = Command::execute("echo", Some(submit(&[("text", "x")])));
        c.action = Some(Action::Complete);
        c.sessionid = Some(sid.to_owned());
        c
    };

    // Another resource of the same account cannot take over the session.
    let first = alice.command(start("echo")).await.unwrap();
    assert_eq!(first.status, Some(Status::Executing));
    let sid = first.sessionid.unwrap();
    let (name, text) = condition(&alice_phone.command(complete(&sid)).await.unwrap_err());
    assert_eq!(name, "bad-request");
    assert!(text.contains("no open session"), "{text}");
    // The owner can, once.
    let done = alice.command(complete(&sid)).await.unwrap();
    assert_eq!(done.status, Some(Status::Completed));
    let error = alice.command(complete(&sid)).await.unwrap_err();
    assert!(
        error
            .other
            .as_ref()
            .is_some_and(|e| e.is("bad-sessionid", NS_COMMANDS)),
        "{error:?}"
    );

    // A session left open past its lifetime says it expired.
    let first = alice.command(start("echo")).await.unwrap();
    let sid = first.sessionid.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let error = alice.command(complete(&sid)).await.unwrap_err();
    let (name, text) = condition(&error);
    assert_eq!(name, "not-allowed");
    assert!(text.contains("expired"), "{text}");
    assert!(
        error
            .other
            .as_ref()
            .is_some_and(|e| e.is("session-expired", NS_COMMANDS))
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_command_without_input_runs_on_the_first_execute() {
    let prosody = Prosody::start().await;
    let ctx = TestContext {
        admin: Some(BareJid::new("alice@localhost").unwrap()),
        ..TestContext::default()
    };
    let agent = start_agent(&prosody, &["alice@localhost"], ctx, |_| {}).await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let answer = alice
        .command(Command::execute("admin_only", None))
        .await
        .unwrap();
    assert_eq!(answer.status, Some(Status::Completed));
    assert_eq!(
        field_values(answer.form.as_ref().unwrap(), "who"),
        ["alice@localhost"]
    );
    agent.stop().await;
}

// --- disco and authorisation --------------------------------------------------

#[tokio::test]
async fn disco_lists_only_what_the_asker_may_run() {
    let prosody = Prosody::start().await;
    let ctx = TestContext {
        admin: Some(BareJid::new("alice@localhost").unwrap()),
        ..TestContext::default()
    };
    let agent = start_agent(&prosody, &["alice@localhost", "bob@localhost"], ctx, |_| {}).await;
    for user in ["alice", "bob", "mallory"] {
        prosody.register(user, PASSWORD).await;
    }
    // slixmpp hands the items back as a set: compare sorted.
    let nodes = |answer: &Value| -> Vec<String> {
        let mut nodes: Vec<String> = answer["commands"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|c| {
                assert_eq!(c["jid"], "agent@localhost/agent", "{answer}");
                c["node"].as_str().unwrap().to_owned()
            })
            .collect();
        nodes.sort();
        nodes
    };

    let alice = Slix::new(&prosody, "alice@localhost/slix")
        .run(&[], "commands", &[])
        .await;
    assert_eq!(
        nodes(&alice),
        ["admin_only", "echo", "fail", "panic", "slow"]
    );
    assert!(
        alice["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["node"] == "echo" && c["name"] == "Echo the form"),
        "{alice}"
    );
    let bob = Slix::new(&prosody, "bob@localhost/slix")
        .run(&[], "commands", &[])
        .await;
    assert_eq!(nodes(&bob), ["echo", "fail", "panic", "slow"]);
    let mallory = Slix::new(&prosody, "mallory@localhost/slix")
        .run(&[], "commands", &[])
        .await;
    assert_eq!(nodes(&mallory), Vec::<String>::new());

    // disco#info on the agent: identity and features.
    let info = Slix::new(&prosody, "mallory@localhost/slix")
        .run(&[], "info", &[])
        .await;
    assert_eq!(info["type"], "result", "{info}");
    for feature in [
        "http://jabber.org/protocol/commands",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "jabber:x:data",
        "urn:xmpp:ping",
    ] {
        assert!(
            info["features"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == feature),
            "{feature} missing: {info}"
        );
    }
    // disco#info on a command node: only for those who may run it.
    let node = Slix::new(&prosody, "bob@localhost/slix")
        .run(&[], "info", &["echo"])
        .await;
    assert_eq!(node["identities"][0][0], "automation", "{node}");
    assert_eq!(node["identities"][0][1], "command-node", "{node}");
    let hidden = Slix::new(&prosody, "bob@localhost/slix")
        .run(&[], "info", &["admin_only"])
        .await;
    assert_eq!(hidden["condition"], "item-not-found", "{hidden}");
    agent.stop().await;
}

#[tokio::test]
async fn peers_are_recognised_whatever_the_letter_case_and_resource() {
    let prosody = Prosody::start().await;
    // The allow-list spells the JID differently from the account.
    let agent = start_agent(
        &prosody,
        &["Alice@LocalHost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    prosody.register("bob", PASSWORD).await;

    // The same account, logged in with other letter case and another resource: served.
    let alice = Slix::new(&prosody, "ALICE@LOCALHOST/OtherDevice");
    let answer = alice.run(&[], "single", &["echo", "text=hi"]).await;
    assert_eq!(answer["status"], "completed", "{answer}");
    assert_eq!(
        answer["payloads"][0],
        "<echo xmlns=\"urn:test:echo\">alice@localhost</echo>"
    );
    let commands = alice.run(&[], "commands", &[]).await;
    assert_eq!(
        commands["commands"].as_array().unwrap().len(),
        4,
        "{commands}"
    );

    // Another user: not-authorized on every command, whatever the flow, and no commands.
    let bob = Slix::new(&prosody, "Bob@localhost/Alice");
    for (action, args) in [
        ("single", vec!["echo", "text=hi"]),
        ("single", vec!["no_such_command"]),
        ("multistage", vec!["echo"]),
        ("cancel", vec!["slow"]),
    ] {
        let answer = bob.run(&[], action, &args).await;
        let answer = if answer["steps"].is_array() {
            answer["steps"][0].clone()
        } else {
            answer
        };
        assert_eq!(answer["type"], "error", "{action} {args:?}: {answer}");
        assert_eq!(answer["condition"], "not-authorized", "{answer}");
        assert_eq!(answer["etype"], "auth", "{answer}");
        assert!(
            answer["text"]
                .as_str()
                .unwrap()
                .contains("bob@localhost is not a peer"),
            "{answer}"
        );
    }
    let commands = bob.run(&[], "commands", &[]).await;
    assert_eq!(commands["commands"], serde_json::json!([]), "{commands}");

    // A command hidden from an allowed peer is refused too.
    let denied = alice.run(&[], "single", &["admin_only"]).await;
    assert_eq!(denied["condition"], "not-authorized", "{denied}");
    agent.stop().await;
}

#[tokio::test]
async fn the_allow_list_can_be_replaced_while_running() {
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    let peers = quoalise_agent::xmpp::AllowList::new(["alice@localhost"]).unwrap();
    let agent = Running::spawn(
        quoalise_agent::xmpp::XmppAgent::new(&xmpp_config(&prosody, AGENT, "agent")).unwrap(),
        test_commands(TestContext::default()),
        peers.clone(),
    );
    agent.wait_up().await;
    let bob = Peer::connect(&prosody, "bob", "laptop").await;
    let (name, _) = condition(&bob.command(echo(&[("text", "x")])).await.unwrap_err());
    assert_eq!(name, "not-authorized");

    peers.replace(["alice@localhost", "bob@localhost"]).unwrap();
    let answer = bob.command(echo(&[("text", "x")])).await.unwrap();
    assert_eq!(answer.status, Some(Status::Completed));
    agent.stop().await;
}

// --- errors and bad input ---------------------------------------------------------

#[tokio::test]
async fn command_errors_reach_the_peer_as_the_protocol_says() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let slix = Slix::new(&prosody, "alice@localhost/slix");

    let upstream = slix.run(&[], "single", &["fail", "kind=upstream"]).await;
    assert_eq!(upstream["condition"], "undefined-condition", "{upstream}");
    assert_eq!(upstream["etype"], "cancel");
    assert!(
        upstream["text"]
            .as_str()
            .unwrap()
            .contains("last activation date")
    );
    let error: Element = upstream["xml"].as_str().unwrap().parse().unwrap();
    let detail = error
        .get_child("upstream-error", "urn:quoalise:0")
        .unwrap_or_else(|| panic!("{upstream}"));
    assert_eq!(detail.attr("issuer"), Some("enedis-data-connect"));
    assert_eq!(detail.attr("code"), Some("ADAM-ERR0123"));

    let unavailable = slix.run(&[], "single", &["fail", "kind=unavailable"]).await;
    assert_eq!(
        unavailable["condition"], "service-unavailable",
        "{unavailable}"
    );
    assert_eq!(unavailable["etype"], "wait");

    // A missing required field is named.
    let missing = slix
        .run(&[], "single", &["echo", "direction=production"])
        .await;
    assert_eq!(missing["condition"], "bad-request", "{missing}");
    assert_eq!(missing["etype"], "modify");
    assert_eq!(missing["text"], "missing required field 'text'");
    let bad_choice = slix
        .run(&[], "single", &["echo", "text=x", "direction=sideways"])
        .await;
    assert_eq!(
        bad_choice["text"],
        "field 'direction' must be one of: consumption, production; got 'sideways'"
    );
    agent.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_errors_and_the_agent_keeps_answering() {
    let prosody = Prosody::start().await;
    let ctx = TestContext::default();
    let agent = start_agent(&prosody, &["alice@localhost"], ctx, |_| {}).await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let parse = |xml: &str| -> Element { xml.parse().unwrap() };
    let cmd = NS_COMMANDS;

    let cases: Vec<(&str, bool, Element, &str, &str)> = vec![
        // (what, is_set, payload, condition, text fragment)
        (
            "no node",
            true,
            parse(&format!(r#"<command xmlns="{cmd}" action="execute"/>"#)),
            "bad-request",
            "no 'node' attribute",
        ),
        (
            "unknown action",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo" action="explode"/>"#
            )),
            "bad-request",
            "unknown action 'explode'",
        ),
        (
            "unknown node",
            true,
            parse(&format!(r#"<command xmlns="{cmd}" node="nope"/>"#)),
            "item-not-found",
            "no command 'nope'",
        ),
        (
            "result form",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo"><x xmlns="jabber:x:data" type="result"/></command>"#
            )),
            "bad-request",
            "type 'submit'",
        ),
        (
            "broken form",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo"><x xmlns="jabber:x:data"/></command>"#
            )),
            "bad-request",
            "malformed <command/>",
        ),
        (
            "unknown session",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo" sessionid="forged" action="complete"/>"#
            )),
            "bad-request",
            "no open session",
        ),
        (
            "prev",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo" action="prev" sessionid="x"/>"#
            )),
            "bad-request",
            "no previous stage",
        ),
        (
            "cancel without session",
            true,
            parse(&format!(
                r#"<command xmlns="{cmd}" node="echo" action="cancel"/>"#
            )),
            "bad-request",
            "sessionid",
        ),
        (
            "command in a get",
            false,
            parse(&format!(r#"<command xmlns="{cmd}" node="echo"/>"#)),
            "bad-request",
            "type='set'",
        ),
        (
            "disco in a set",
            true,
            parse(r#"<query xmlns="http://jabber.org/protocol/disco#items"/>"#),
            "bad-request",
            "type='get'",
        ),
        (
            "unknown namespace",
            false,
            parse(r#"<query xmlns="jabber:iq:version"/>"#),
            "service-unavailable",
            "does not handle",
        ),
        (
            "unknown disco node",
            false,
            parse(r#"<query xmlns="http://jabber.org/protocol/disco#items" node="nope"/>"#),
            "item-not-found",
            "no node 'nope'",
        ),
        (
            "panicking command",
            true,
            parse(&format!(r#"<command xmlns="{cmd}" node="panic"/>"#)),
            "internal-server-error",
            "failed unexpectedly",
        ),
    ];
    for (what, is_set, payload, expected, fragment) in cases {
        let answer = if is_set {
            alice.set(payload).await
        } else {
            alice.get(payload).await
        };
        let error = match answer {
            Err(quoalise_agent::xmpp::IqError::Error(e)) => e,
            other => panic!("{what}: expected an error, got {other:?}"),
        };
        let (name, text) = condition(&error);
        assert_eq!(name, expected, "{what}: {text}");
        assert!(text.contains(fragment), "{what}: {text}");
        // Still serving.
        let ok = alice.command(echo(&[("text", what)])).await;
        assert_eq!(
            ok.map(|c| c.status),
            Ok(Some(Status::Completed)),
            "after {what}"
        );
    }
    agent.stop().await;
}

#[tokio::test]
async fn raw_stanzas_from_an_independent_client_never_silence_the_agent() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let slix = Slix::new(&prosody, "alice@localhost/slix");
    let to = agent_jid();
    let cmd = NS_COMMANDS;
    for (xml, condition) in [
        // Two payloads in one iq: refused (by Prosody or by the agent), never silence.
        (
            format!(
                r#"<iq type="set" id="raw1" to="{to}"><command xmlns="{cmd}" node="echo"/><command xmlns="{cmd}" node="slow"/></iq>"#
            ),
            "bad-request",
        ),
        // Garbage attributes and children inside <command/>.
        (
            format!(
                r#"<iq type="set" id="raw1" to="{to}"><command xmlns="{cmd}" node="echo" status="bogus"><x xmlns="jabber:x:data" type="submit"><field var="text"><value>a</value></field></x></command></iq>"#
            ),
            "bad-request",
        ),
    ] {
        let answer = slix.run(&[], "raw", &[&xml]).await;
        assert_eq!(answer["type"], "error", "{xml}: {answer}");
        assert_eq!(answer["condition"], condition, "{xml}: {answer}");
    }
    let answer = slix.run(&[], "single", &["echo", "text=still here"]).await;
    assert_eq!(answer["status"], "completed", "{answer}");
    agent.stop().await;
}

// --- concurrency and deadlines -----------------------------------------------------

#[tokio::test]
async fn a_slow_command_does_not_delay_another_peer() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost", "bob@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let bob = Peer::connect(&prosody, "bob", "laptop").await;

    let started = Instant::now();
    let slow = async {
        let answer = alice
            .command(Command::execute("slow", Some(submit(&[("seconds", "3")]))))
            .await;
        (answer, started.elapsed())
    };
    let fast = async {
        // Sent while the slow one runs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answer = bob.command(echo(&[("text", "quick")])).await;
        (answer, started.elapsed())
    };
    let ((slow_answer, slow_done), (fast_answer, fast_done)) = tokio::join!(slow, fast);
    assert_eq!(slow_answer.unwrap().status, Some(Status::Completed));
    assert_eq!(fast_answer.unwrap().status, Some(Status::Completed));
    assert!(
        fast_done < slow_done,
        "bob's answer ({fast_done:?}) waited for alice's slow command ({slow_done:?})"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_an_error() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |a| {
            a.router_settings_mut().request_timeout = Duration::from_secs(1);
        },
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let error = alice
        .command(Command::execute("slow", Some(submit(&[("seconds", "20")]))))
        .await
        .unwrap_err();
    let (name, text) = condition(&error);
    assert_eq!(name, "service-unavailable");
    assert!(text.contains("did not complete within 1 s"), "{text}");
    agent.stop().await;
}
