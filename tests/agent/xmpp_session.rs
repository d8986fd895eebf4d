//! The agent's XMPP session against a real Prosody: STARTTLS with the test CA,
//! plaintext only when allowed, clear reports when the first session cannot be
//! established, XEP-0199, reconnection after a Prosody restart, graceful
//! shutdown.

use crate::common;

use std::time::Duration;

use common::prosody::{Prosody, ProsodyOptions};
use common::xmpp_harness::*;
use quoalise_agent::xmpp::{AllowList, Command, CommandSet, SessionState, XmppAgent};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::IqRequestPayload;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ping::Ping;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

/// Starts an agent with `config` (account registered) and no commands.
fn spawn_plain(config: &quoalise_agent::config::XmppConfig) -> Running {
    Running::spawn(
        XmppAgent::new(config).unwrap(),
        CommandSet::new(()),
        AllowList::default(),
    )
}

#[tokio::test]
async fn starttls_with_the_ca_file_connects_and_answers_pings() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    assert!(
        logs.text().contains("connected and authenticated")
            && logs.text().contains("transport=\"TLS\""),
        "{}",
        logs.text()
    );

    // XEP-0199: the agent answers a ping from a peer (slixmpp) with a result.
    let ping = Slix::new(&prosody, "alice@localhost/slix");
    prosody.register("alice", PASSWORD).await;
    let answer = ping.run(&[], "ping", &[]).await;
    assert_eq!(answer["type"], "result", "{answer}");
    assert!(agent.handle.is_up());
    agent.stop().await;
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_refused_and_reported() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    let mut config = xmpp_config(&prosody, AGENT, "agent");
    config.ca_file = None; // the system roots do not know the test CA
    config.first_session_deadline_secs = 1;
    let agent = spawn_plain(&config);

    assert!(
        logs.wait_for("no session after 1 s", Duration::from_secs(10))
            .await,
        "{}",
        logs.text()
    );
    // Past the deadline it keeps trying; repeats of the same failure are not
    // logged again at WARN.
    assert!(
        logs.wait_for("connection attempt failed again", Duration::from_secs(10))
            .await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    let deadline_line = text
        .lines()
        .find(|l| l.contains("no session after 1 s"))
        .unwrap();
    assert!(deadline_line.contains("ERROR"), "{deadline_line}");
    assert!(deadline_line.contains("TLS handshake"), "{deadline_line}");
    assert!(
        deadline_line.contains("set xmpp.ca_file"),
        "{deadline_line}"
    );
    assert_eq!(
        text.matches("connection attempt failed; retrying").count(),
        1,
        "{text}"
    );
    assert_eq!(agent.handle.state(), SessionState::Connecting);
    agent.stop().await;
}

#[tokio::test]
async fn a_wrong_password_is_reported_as_such() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    let mut config = xmpp_config(&prosody, AGENT, "agent");
    config.password = quoalise_agent::config::Secret::new("not-the-password");
    config.first_session_deadline_secs = 1;
    let agent = spawn_plain(&config);

    assert!(
        logs.wait_for("no session after 1 s", Duration::from_secs(10))
            .await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("no session after"))
        .unwrap();
    assert!(
        line.contains("authentication as agent@localhost failed"),
        "{line}"
    );
    assert!(line.contains("wrong password or unknown account"), "{line}");
    assert!(
        !text.contains("not-the-password"),
        "the password leaked into the log"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_reported_as_such() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    let mut config = xmpp_config(&prosody, AGENT, "agent");
    // A port nothing listens on (an ephemeral one could be taken meanwhile by
    // another test's simulator or connection).
    let port = common::prosody::free_port();
    config.server = Some(format!("127.0.0.1:{port}"));
    config.first_session_deadline_secs = 1;
    let agent = spawn_plain(&config);
    assert!(
        logs.wait_for("no session after 1 s", Duration::from_secs(10))
            .await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("no session after"))
        .unwrap();
    assert!(line.contains("nothing listens at that address"), "{line}");
    agent.stop().await;
}

#[tokio::test]
async fn plaintext_is_refused_unless_allowed() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start_with(ProsodyOptions {
        tls: false,
        ..ProsodyOptions::default()
    })
    .await;
    prosody.register(AGENT, PASSWORD).await;
    let mut config = xmpp_config(&prosody, AGENT, "agent");
    config.first_session_deadline_secs = 1;

    // Not allowed: the agent does not log in and says why.
    let refusing = spawn_plain(&config);
    assert!(
        logs.wait_for("no session after 1 s", Duration::from_secs(10))
            .await,
        "{}",
        logs.text()
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("no session after"))
        .unwrap();
    assert!(line.contains("does not offer STARTTLS"), "{line}");
    assert!(!refusing.handle.is_up());
    refusing.stop().await;

    // Allowed: it logs in, and the log says the stream is unencrypted.
    config.allow_plaintext = true;
    let allowed = spawn_plain(&config);
    allowed.wait_up().await;
    assert!(
        logs.text().contains("plaintext (xmpp.allow_plaintext)"),
        "{}",
        logs.text()
    );
    allowed.stop().await;
}

#[tokio::test]
async fn the_agent_answers_again_after_prosody_restarts() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let mut prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    prosody.register("alice", PASSWORD).await;
    let alice = Slix::new(&prosody, "alice@localhost/slix");
    let answer = alice.run(&[], "single", &["echo", "text=before"]).await;
    assert_eq!(answer["status"], "completed", "{answer}");

    prosody.restart().await;

    // The same agent, not restarted, comes back and serves.
    assert!(
        logs.wait_for("XMPP: new session", Duration::from_secs(30))
            .await,
        "{}",
        logs.text()
    );
    agent.wait_up().await;
    let answer = alice.run(&[], "single", &["echo", "text=after"]).await;
    assert_eq!(answer["status"], "completed", "{answer}");
    let text = logs.text();
    // Each change is logged once.
    assert_eq!(text.matches("XMPP: connection lost").count(), 1, "{text}");
    assert_eq!(text.matches("XMPP: session up").count(), 1, "{text}");
    assert_eq!(text.matches("XMPP: new session").count(), 1, "{text}");
    // One restart is not mistaken for two instances fighting over the resource.
    assert!(!text.contains("pausing before reconnecting"), "{text}");
    agent.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_running_requests_and_says_goodbye() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost", "bob@localhost"],
        TestContext::default(),
        |_| {},
    )
    .await;
    let mut alice = Peer::connect(&prosody, "alice", "laptop").await;
    let bob = Peer::connect(&prosody, "bob", "phone").await;
    let agent_bare = Jid::from(agent_jid().to_bare());

    // Alice subscribes to the agent's presence: a peer is approved, and she sees
    // it online.
    alice
        .running
        .handle
        .send(Presence::subscribe().with_to(agent_bare.clone()))
        .await
        .unwrap();
    wait_presence(&mut alice, PresenceType::None).await;

    let slow = Command::execute("slow", Some(submit(&[("seconds", "1.5")])));
    let (slow_answer, refused) = tokio::join!(alice.command(slow), async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        agent.shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(300)).await;
        bob.command(Command::execute("echo", Some(submit(&[("text", "late")]))))
            .await
    });

    // The running request finished normally…
    let slow_answer = slow_answer.expect("the running command completes");
    assert_eq!(
        slow_answer.status,
        Some(quoalise_agent::xmpp::Status::Completed)
    );
    // …a new one was refused with a reason…
    let (name, text) = condition(&refused.expect_err("no new command during shutdown"));
    assert_eq!(name, "service-unavailable");
    assert!(text.contains("shutting down"), "{text}");
    // …the agent said goodbye and stopped.
    wait_presence(&mut alice, PresenceType::Unavailable).await;
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_forever_for_a_running_request() {
    let prosody = Prosody::start().await;
    let agent = start_agent(
        &prosody,
        &["alice@localhost"],
        TestContext::default(),
        |a| {
            a.router_settings_mut().shutdown_grace = Duration::from_millis(500);
        },
    )
    .await;
    let alice = Peer::connect(&prosody, "alice", "laptop").await;
    let slow = Command::execute("slow", Some(submit(&[("seconds", "30")])));
    let (answer, ()) = tokio::join!(alice.command(slow), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        agent.shutdown.cancel();
    });
    let (name, text) = condition(&answer.expect_err("abandoned at shutdown"));
    assert_eq!(name, "service-unavailable");
    assert!(text.contains("abandoned"), "{text}");
    agent.stop().await;
}

#[tokio::test]
async fn two_instances_with_the_same_jid_do_not_reconnect_in_a_tight_loop() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    let config = xmpp_config(&prosody, AGENT, "agent");
    // Prosody gives the resource to the newest login and kicks the other out,
    // which logs in again, and so on (without a pause: hundreds of logins in
    // a few seconds).
    let first = spawn_plain(&config);
    first.wait_up().await;
    let second = spawn_plain(&config);
    assert!(
        logs.wait_for("pausing before reconnecting", Duration::from_secs(15))
            .await,
        "{}",
        logs.text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logins = logs.text().matches("connected and authenticated").count();
    assert!(
        logins < 20,
        "{logins} logins: the instances fight in a tight loop"
    );
    first.stop().await;
    second.stop().await;
}

/// Waits for a presence of `type_` from the agent's full JID.
async fn wait_presence(peer: &mut Peer, type_: PresenceType) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stanza = tokio::time::timeout_at(deadline, peer.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("no presence {type_:?} from the agent within 10 s"))
            .expect("inbound open");
        if let Stanza::Presence(p) = stanza
            && p.from.as_ref() == Some(&agent_jid())
            && p.type_ == type_
        {
            return;
        }
    }
}

#[tokio::test]
async fn keepalive_pings_are_sent_and_answered() {
    let logs = LogCapture::default();
    let _guard = logs.install();
    let prosody = Prosody::start().await;
    prosody.register(AGENT, PASSWORD).await;
    let mut config = xmpp_config(&prosody, AGENT, "agent");
    config.ping_interval_secs = 1;
    let agent = spawn_plain(&config);
    agent.wait_up().await;
    assert!(
        logs.wait_for("keepalive ping answered", Duration::from_secs(8))
            .await,
        "{}",
        logs.text()
    );
    // The agent's own iq helper, against the server.
    let answer = agent
        .handle
        .send_iq(
            Some(Jid::new("localhost").unwrap()),
            IqRequestPayload::Get(Ping.into()),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(answer, Ok(None));
    agent.stop().await;
}
