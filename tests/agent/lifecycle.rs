//! The REAL `quoalise-agent run` as an operator meets it: start-up (READY only
//! once ready; exit 1 only on an unusable configuration), a wrong XMPP password
//! (keeps running, says why), SIGHUP (new peers without reconnecting, an
//! invalid configuration rejected), Prosody restarting under it, SIGTERM
//! (unavailable presence, exit 0).

use crate::common;
use crate::common::agent_harness;
use crate::common::config::AgentConfig;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use agent_harness::*;
use common::xmpp_harness::{PASSWORD, Peer, agent_jid, condition};
use quoalise_agent::xmpp::Command;
use tokio_xmpp::Stanza;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

/// A `NOTIFY_SOCKET` the agent reports to, as systemd would read it.
struct NotifySocket {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    /// Reads messages until one contains `needle`; returns it.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                if message.contains(needle) {
                    return Some(message);
                }
            }
        }
        None
    }
}

#[tokio::test]
async fn an_invalid_configuration_is_the_only_reason_to_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        r#"
[xmpp]
jid = "agent@localhost"
password = "x"
[enedis]
api = "v9"
client_id = "id"
client_secret = "s"
[web]
listen = "not an address"
public_url = "http://127.0.0.1:1"
"#,
    )
    .unwrap();
    let out = tokio::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("enedis.api"), "{err}");
    assert!(err.contains("web.listen"), "{err}");
    assert!(err.contains("xmpp.jid"), "{err}");
    assert!(
        err.contains("invalid configuration (3 problems), not starting"),
        "{err}"
    );

    // A store that cannot be opened: a clear line, exit 1, no READY.
    let notify = NotifySocket::new();
    AgentConfig::new()
        .set("xmpp.jid", "agent@localhost/agent")
        .set("xmpp.server", "127.0.0.1:1")
        .set("web.listen", format!("127.0.0.1:{}", free_port()))
        .set("web.public_url", "http://127.0.0.1:1")
        .set("store.path", "missing-dir/agent.db")
        .write(dir.path());
    let out = tokio::process::Command::new(AGENT_BIN)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("NOTIFY_SOCKET", &notify.path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot start"), "{err}");
    assert!(err.contains("missing-dir"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert_eq!(notify.wait_for("READY=1", Duration::from_millis(300)), None);
}

#[tokio::test]
async fn a_wrong_xmpp_password_keeps_the_agent_running_and_says_why() {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM])]);
    settings.xmpp_password = "not-the-password".to_owned();
    settings.first_session_deadline_secs = 2;
    let mut d = Deployment::launch(settings, &[], &[]).await;
    assert!(
        d.agent
            .wait_log(
                "no session after 2 s; still retrying",
                Duration::from_secs(20)
            )
            .await,
        "{}",
        d.agent.log()
    );
    let log = d.agent.log();
    assert!(log.contains("wrong password or unknown account"), "{log}");
    assert!(
        !log.contains("not-the-password"),
        "the password is never logged"
    );
    assert_eq!(d.agent.try_status(), None, "still running");
    let (status, body) = d.agent.healthz().await.expect("the web port answers");
    assert_eq!(status, 503);
    assert!(body.contains("store: ok"), "{body}");
    assert!(body.contains("xmpp: FAILED: no session yet"), "{body}");

    d.agent.signal("-TERM");
    let status = d.agent.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn ready_after_start_up_then_sigterm_says_goodbye_and_exits_zero() {
    let notify = NotifySocket::new();
    let socket = notify.path.to_str().unwrap().to_owned();
    let mut d = Deployment::launch(
        AgentSettings::with_peers(vec![peer("alice", &[PRM])]),
        &[],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "2000000")],
    )
    .await;
    let ready = notify
        .wait_for("READY=1", Duration::from_secs(30))
        .expect("READY=1");
    assert!(ready.contains("STATUS=serving 1 peers"), "{ready}");
    // READY means the web port is bound.
    std::net::TcpStream::connect(("127.0.0.1", d.agent.web_port)).expect("web port bound at READY");
    // The main loop keeps the watchdog fed.
    assert!(
        notify
            .wait_for("WATCHDOG=1", Duration::from_secs(5))
            .is_some()
    );
    d.agent.wait_healthy(Duration::from_secs(30)).await;

    // A peer that sees the agent's presence.
    let mut alice = Peer::login(&d.prosody, "alice@localhost/watcher").await;
    let agent_bare = Jid::from(agent_jid().to_bare());
    alice
        .running
        .handle
        .send(Presence::subscribe().with_to(agent_bare))
        .await
        .unwrap();
    wait_presence(&mut alice, PresenceType::None).await;

    d.agent.signal("-TERM");
    wait_presence(&mut alice, PresenceType::Unavailable).await;
    let status = d.agent.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", d.agent.log());
    assert!(
        notify
            .wait_for("STOPPING=1", Duration::from_secs(2))
            .is_some()
    );
    let log = d.agent.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("XMPP: stopped"), "{log}");
}

/// Waits for a presence of type `kind` from the agent's full JID.
async fn wait_presence(peer: &mut Peer, kind: PresenceType) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stanza = tokio::time::timeout_at(deadline, peer.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} presence from the agent within 20 s"))
            .expect("the peer's inbound queue is open");
        if let Stanza::Presence(p) = stanza
            && p.from.as_ref() == Some(&agent_jid())
            && p.type_ == kind
        {
            return;
        }
    }
}

#[tokio::test]
async fn sighup_applies_new_peers_without_reconnecting_and_rejects_invalid_configs() {
    let mut settings = AgentSettings::with_peers(vec![peer("alice", &[PRM])]);
    let d = Deployment::start(settings.clone()).await;
    d.prosody.register("bob", PASSWORD).await;
    let bob = Peer::login(&d.prosody, "bob@localhost/x").await;
    let list = || Command::execute("list_usage_points", None);
    let error = bob.command(list()).await.expect_err("bob is no peer yet");
    assert_eq!(condition(&error).0, "not-authorized");

    // A new peer: served at once, on the same session.
    settings.peers.push(peer("bob", &[PRM_PT10M]));
    d.rewrite(&settings);
    d.agent.signal("-HUP");
    assert!(
        d.agent
            .wait_log("configuration reloaded", Duration::from_secs(10))
            .await
    );
    let answer = bob
        .command(list())
        .await
        .expect("bob is served after the reload");
    let form = answer.form.expect("a result form");
    let values = form
        .fields
        .iter()
        .find(|f| f.var.as_deref() == Some("usage_points"))
        .map(|f| f.values.clone())
        .unwrap();
    assert_eq!(values, [PRM_PT10M]);

    // An invalid configuration: rejected with its reasons, the old one kept.
    std::fs::write(
        d.files.path(),
        std::fs::read_to_string(d.files.path())
            .unwrap()
            .replace(PRM_PT10M, "123"),
    )
    .unwrap();
    d.agent.signal("-HUP");
    assert!(
        d.agent
            .wait_log("reload rejected", Duration::from_secs(10))
            .await
    );
    let log = d.agent.log();
    let rejected = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(rejected.contains("peers[1].usage_points[0]"), "{rejected}");
    bob.command(list())
        .await
        .expect("the old configuration stays in force");

    // A setting that needs a restart is reported, the peers still applied.
    let mut moved = settings.clone();
    moved.peers.truncate(1);
    d.rewrite(&moved);
    let text = std::fs::read_to_string(d.files.path()).unwrap().replace(
        &format!("listen = \"127.0.0.1:{}\"", d.files.web_port),
        &format!("listen = \"127.0.0.1:{}\"", free_port()),
    );
    std::fs::write(d.files.path(), text).unwrap();
    d.agent.signal("-HUP");
    assert!(
        d.agent
            .wait_log("other changes need a restart", Duration::from_secs(10))
            .await
    );
    assert!(
        d.agent.log().contains("restart_needed=web.listen"),
        "{}",
        d.agent.log()
    );
    let error = bob.command(list()).await.expect_err("bob was removed");
    assert_eq!(condition(&error).0, "not-authorized");
    // Still the web port it started with.
    assert_eq!(d.agent.healthz().await.unwrap().0, 200);

    // One session all along.
    assert_eq!(d.agent.count("XMPP: session up"), 1, "{}", d.agent.log());
    assert_eq!(d.agent.count("XMPP: new session"), 0);
}

#[tokio::test]
async fn the_agent_answers_again_after_prosody_restarts() {
    let mut d = Deployment::start(AgentSettings::with_peers(vec![peer("alice", &[PRM])])).await;
    let (code, _, err) = d.query("alice", &["list-usage-points"]).await;
    assert_eq!(code, 0, "{err}");

    d.prosody.restart().await;
    // The agent reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = d.agent.healthz().await
            && d.agent.count("XMPP: new session") + d.agent.count("XMPP: session resumed") > 0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not reconnect within 60 s:\n{}",
            d.agent.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = d.query("alice", &["list-usage-points"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(PRM), "{out}");
    assert_eq!(d.agent.try_status(), None);
    let metrics = d.agent.metrics().await;
    assert!(
        metrics.contains("quoalise_agent_xmpp_reconnects_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("quoalise_agent_xmpp_session_up 1"),
        "{metrics}"
    );
}
