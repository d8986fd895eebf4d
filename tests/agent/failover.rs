//! Active/standby agents on one PostgreSQL (issue 19): two REAL agent
//! binaries on one database and one configuration (only `web.listen`, and the
//! public URL with it, differ), one real Prosody, the real `enedis-sim`.
//!
//! - The first to start leads: it holds the XMPP session and answers peers;
//!   the other is a standby, healthy, that says so on `/healthz` and in
//!   `/metrics`, and opens no XMPP session.
//! - kill -9 of the leader: the standby takes over and answers the peer.
//! - `pg_terminate_backend` of the leader's lock connection (found in
//!   `pg_stat_activity` by its application name): the old leader drops its
//!   session at once and stands by, in the same process; its XMPP session has
//!   ended in Prosody's log before the new leader's is authenticated; it leads
//!   again when the new leader dies.
//! - SIGTERM on the leader: it exits cleanly, its stream closes before its lock
//!   is released, and the standby, told of the clean handover, serves at once.
//! - The quota: the hour the old leader spent counts for the new one.
//! - A consumer's consent completed on the standby's pages: the peer gets its
//!   XMPP notification from the leader.
//! - The leader's store writes fail for 30 s: it hands over to the standby and
//!   does not ask for the lock again until its writes work.

use std::time::{Duration, Instant};

use crate::common;
use crate::common::agent_harness;
use crate::common::standby::*;

use agent_harness::*;
use common::xmpp_harness::{Peer, condition, field_values, submit};
use minidom::Element;
use quoalise_agent::web::NS_AUTHORIZE;
use quoalise_agent::xmpp::Command;
use tokio_xmpp::Stanza;

/// The standby is healthy and says it is one; it opens no XMPP session; kill -9
/// of the leader makes it the leader, and it answers the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_when_the_leader_is_killed() {
    let mut pair = Pair::start(AgentSettings::with_peers(vec![peer("app", &[PRM])])).await;
    let (_, leader) = pair.first.process.healthz().await.unwrap();
    assert!(leader.contains("\nxmpp: ok\n"), "{leader}");
    let (_, standby) = pair.second.process.healthz().await.unwrap();
    assert!(standby.starts_with("store: ok\n"), "{standby}");
    assert!(
        standby.contains("\nxmpp: ok (standby: the leader holds the XMPP session)\n"),
        "{standby}"
    );
    let leader_metric = "quoalise_agent_leader";
    assert_eq!(
        metric(&pair.first.process.metrics().await, leader_metric),
        Some(1.0)
    );
    assert_eq!(
        metric(&pair.second.process.metrics().await, leader_metric),
        Some(0.0)
    );
    assert_eq!(
        pair.waiting_for_the_lock().await,
        1,
        "the standby waits in PostgreSQL"
    );

    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    answered(&app, 2).await;
    assert_eq!(pair.second.process.count("XMPP: connecting"), 0);
    assert_eq!(agent_sessions(&pair.prosody).len(), 1);

    pair.first.process.signal("-KILL");
    let status = pair.first.process.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success(), "killed: {status}");
    let body = wait_role(&mut pair.second.process, "leader", Duration::from_secs(60)).await;
    // Leader, but healthy only once its session is up.
    let _ = body;
    pair.second
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    let log = pair.second.process.log();
    assert!(log.contains("leader: lock taken"), "{log}");
    // kill -9 says nothing: the new leader waited before serving.
    assert!(log.contains("waiting the grace period"), "{log}");
    answered(&app, 3).await;
    assert_eq!(
        metric(&pair.second.process.metrics().await, leader_metric),
        Some(1.0)
    );
    sessions_did_not_overlap(&pair.prosody, 2);
    pair.second.process.stop().await;
}

/// The leader's lock connection killed in PostgreSQL: the leader stops at once
/// and stands by, its session ends before the new leader's starts, and the
/// new leader answers. Then the new leader is killed: the first one, in the
/// same process, leads again and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_connection_dies_stops_before_the_standby_serves() {
    let mut pair = Pair::start(AgentSettings::with_peers(vec![peer("app", &[PRM])])).await;
    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    answered(&app, 2).await;
    let sessions = pair
        .count(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'quoalise-agent leader lock' \
             AND datname = current_database()",
        )
        .await;
    assert_eq!(sessions, 2, "the leader's lock and the standby's wait");

    let pid = pair.leader_lock_pid().await;
    let killed: bool = pair
        .db(move |db| {
            db.query_one("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap()
                .get(0)
        })
        .await;
    assert!(killed);
    assert!(
        pair.first
            .process
            .wait_log(
                "XMPP: session dropped at once (fenced)",
                Duration::from_secs(5)
            )
            .await,
        "{}",
        pair.first.process.log()
    );
    let old = pair.first.process.log();
    let lost = old
        .lines()
        .find(|l| l.contains("leadership lost"))
        .unwrap_or_else(|| panic!("{old}"));
    assert!(
        lost.contains("terminating connection due to administrator command"),
        "{lost}"
    );

    wait_role(&mut pair.second.process, "leader", Duration::from_secs(60)).await;
    pair.second
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    answered(&app, 3).await;
    sessions_did_not_overlap(&pair.prosody, 2);
    // The fenced one stands by, in the same process, waiting for the lock.
    wait_role(&mut pair.first.process, "standby", Duration::from_secs(10)).await;
    let give_up = Instant::now() + Duration::from_secs(30);
    while pair.waiting_for_the_lock().await != 1 {
        assert!(Instant::now() < give_up, "{}", pair.first.process.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(pair.leader_lock_pid().await, pid);

    // And leads again when the other dies.
    pair.second.process.signal("-KILL");
    pair.second.process.wait_exit(Duration::from_secs(30)).await;
    wait_role(&mut pair.first.process, "leader", Duration::from_secs(60)).await;
    pair.first
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    answered(&app, 4).await;
    sessions_did_not_overlap(&pair.prosody, 3);
    assert!(
        pair.first.process.try_status().is_none(),
        "one process all along"
    );
    pair.first.process.stop().await;
}

/// Twenty failovers in a row: the leader killed -9 each time, the other
/// taking over, the killed one started again as the standby. Before each kill
/// a consent is added with its refresh token (as `quoalise-agent consents add`
/// would, while the agents run) and the peer is answered; after it, the new
/// leader answers. Nothing is lost: every consent is there with its PRM and
/// token, the peer's answered requests each have their allowed audit row
/// (committed before the answer), the audit ids only grow, and Prosody never
/// saw two sessions of the agent at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_failovers_lose_no_consent_token_or_audit_row() {
    use quoalise_agent::config::{ApiGeneration, Secret};
    use quoalise_agent::store::{AuditFilter, NewConsent, Store, TokenSet};

    const ROUNDS: i64 = 20;
    let mut pair = Pair::start(AgentSettings::with_peers(vec![peer("app", &[PRM])])).await;
    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    let url = pair.url.clone();
    let store = tokio::task::spawn_blocking(move || Store::connect(&Secret::new(url), None))
        .await
        .unwrap()
        .unwrap();
    let mut answers = 0;
    let mut consents = Vec::new();
    for round in 0..ROUNDS {
        let added = store
            .call(move |s| {
                let now = quoalise_agent::store::now_seconds();
                s.add_consent(
                    &NewConsent {
                        generation: ApiGeneration::V4,
                        owner: format!("owner{round}@localhost"),
                        prms: vec![PRM.parse().unwrap()],
                        autorisation_id: None,
                        valid_from: now - 60,
                        valid_until: now + 86_400,
                    },
                    Some(&TokenSet {
                        refresh_token: Secret::new(format!("refresh-{round}")),
                        access_token: None,
                        access_expires_at: None,
                    }),
                )
            })
            .await
            .unwrap();
        consents.push((round, added.id));
        answered(&app, 2 + round).await;
        answers += 1;

        // `first` leads: killed; `second` takes over.
        pair.first.process.signal("-KILL");
        pair.first.process.wait_exit(Duration::from_secs(30)).await;
        wait_role(&mut pair.second.process, "leader", Duration::from_secs(60)).await;
        pair.second
            .process
            .wait_healthy(Duration::from_secs(30))
            .await;
        answered(&app, 2 + round).await;
        answers += 1;
        // The killed one comes back and stands by; the roles swap.
        pair.first.process.respawn().await;
        wait_role(&mut pair.first.process, "standby", Duration::from_secs(60)).await;
        std::mem::swap(&mut pair.first, &mut pair.second);
    }

    for (round, id) in &consents {
        let (consent, tokens) = store
            .call({
                let id = *id;
                move |s| Ok((s.consent(id)?, s.tokens(id)?))
            })
            .await
            .unwrap();
        let consent = consent.unwrap_or_else(|| panic!("consent {id} of round {round} lost"));
        assert_eq!(consent.owner, format!("owner{round}@localhost"));
        assert_eq!(consent.prms, vec![PRM.parse().unwrap()]);
        let tokens = tokens.unwrap_or_else(|| panic!("the token of consent {id} lost"));
        assert_eq!(
            tokens.tokens.refresh_token.expose(),
            format!("refresh-{round}")
        );
    }
    let trail = store
        .call(|s| {
            s.audit(&AuditFilter {
                peer: Some("app@localhost".into()),
                ..AuditFilter::default()
            })
        })
        .await
        .unwrap();
    let allowed = trail.iter().filter(|r| r.outcome == "allowed").count();
    assert!(
        allowed >= answers,
        "{answers} answers, {allowed} allowed audit rows"
    );
    assert!(trail.windows(2).all(|w| w[0].id < w[1].id));
    sessions_did_not_overlap(&pair.prosody, ROUNDS as usize + 1);
    drop(store);
    pair.first.process.stop().await;
    pair.second.process.stop().await;
}

/// SIGTERM on the leader: a clean exit; its stream is closed before the lock is
/// released; the standby learns it was a clean handover and serves without the
/// grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_over_cleanly() {
    let mut pair = Pair::start(AgentSettings::with_peers(vec![peer("app", &[PRM])])).await;
    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    answered(&app, 2).await;

    pair.first.process.stop().await;
    let old = pair.first.process.log();
    let stopped = old.find("XMPP: stopped").unwrap_or_else(|| panic!("{old}"));
    let released = old
        .find("leader: lock released")
        .unwrap_or_else(|| panic!("{old}"));
    assert!(stopped < released, "the stream closes first:\n{old}");

    wait_role(&mut pair.second.process, "leader", Duration::from_secs(30)).await;
    pair.second
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    let log = pair.second.process.log();
    assert!(log.contains("previous_handed_over=true"), "{log}");
    assert!(!log.contains("waiting the grace period"), "{log}");
    answered(&app, 3).await;
    sessions_did_not_overlap(&pair.prosody, 2);
    pair.second.process.stop().await;
}

/// The leader spends the hour's five calls and is killed once its ledger holds
/// them: the new leader refuses the next request at once, and Enedis sees no
/// sixth call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_leader_counts_the_calls_the_old_one_made_this_hour() {
    const PER_HOUR: u64 = 5;
    let mut settings = AgentSettings::with_peers(vec![peer("app", &[PRM])]);
    settings.calls_per_hour = PER_HOUR as u32;
    settings.quota_wait_secs = 600;
    settings.request_timeout_secs = 120;
    let mut pair = Pair::start(settings).await;
    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    let admin = pair.sim.admin();
    admin.clear_calls().await;
    let mut n = 2;
    while admin.total_calls().await < PER_HOUR {
        assert!(n < 2 + PER_HOUR as i64, "more requests than calls");
        answered(&app, n).await;
        n += 1;
    }
    // A guard against a hang: the ledger is written a second behind.
    let give_up = Instant::now() + Duration::from_secs(60);
    while pair
        .count("SELECT count(*) FROM quota_calls WHERE platform = 'data-connect'")
        .await
        < PER_HOUR as i64
    {
        assert!(
            Instant::now() < give_up,
            "the calls never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pair.first.process.signal("-KILL");
    pair.first.process.wait_exit(Duration::from_secs(30)).await;
    wait_role(&mut pair.second.process, "leader", Duration::from_secs(60)).await;
    pair.second
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    assert_eq!(
        metric(
            &pair.second.process.metrics().await,
            "quoalise_agent_quota_used_this_hour"
        ),
        Some(PER_HOUR as f64)
    );
    let refused = app
        .command(one_day(PRM, days_ago(n)))
        .await
        .expect_err("the hour was spent by the previous leader");
    let (cond, text) = condition(&refused);
    assert_eq!(cond, "service-unavailable", "{text}");
    assert!(
        refused
            .other
            .as_ref()
            .and_then(|o| o.attr("limit"))
            .is_some_and(|l| l == "hourly-quota"),
        "{refused:?}"
    );
    assert_eq!(admin.total_calls().await, PER_HOUR, "no sixth call");
    pair.second.process.stop().await;
}

/// A consumer completes a consent on the standby's pages (as a load balancer
/// in front of both may send them): the consent is stored, and the peer gets
/// its notification over XMPP, from the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_completed_on_the_standby_is_notified_by_the_leader() {
    let mut pair = Pair::start(AgentSettings::with_peers(vec![peer("app", &[])])).await;
    // The simulated Enedis sends consumers back to the standby's pages.
    let standby_web = format!("http://127.0.0.1:{}", pair.second.process.web_port);
    pair.sim
        .admin()
        .config(serde_json::json!({ "redirect_uri": format!("{standby_web}/redirect") }))
        .await;
    let mut app = Peer::login(&pair.prosody, "app@localhost/a").await;
    let answer = app
        .command(Command::execute(
            "get_authorize_uri",
            Some(submit(&[
                ("name", "Elec Expert"),
                ("description", "Reads your meter."),
            ])),
        ))
        .await
        .unwrap_or_else(|e| panic!("{:?}", condition(&e)));
    let uri = field_values(&answer.form.expect("a result form"), "authorize_uri")
        .pop()
        .expect("authorize_uri");
    let on_standby = |url: &str| {
        let mut url = url::Url::parse(url).unwrap();
        url.set_port(Some(pair.second.process.web_port)).unwrap();
        url
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut page = on_standby(&uri);
    page.query_pairs_mut().append_pair("state", "standby-7");
    let html = http.get(page).send().await.unwrap().text().await.unwrap();
    let marker = r#"id="enedis" href=""#;
    let start = html.find(marker).unwrap_or_else(|| panic!("{html}")) + marker.len();
    let end = start + html[start..].find('"').unwrap();
    let mut enedis = url::Url::parse(&html[start..end].replace("&amp;", "&")).unwrap();
    enedis
        .query_pairs_mut()
        .append_pair("sim_auto", "accept")
        .append_pair("sim_prm", PRM);
    let response = http.get(enedis.clone()).send().await.unwrap();
    assert_eq!(
        response.status().as_u16(),
        302,
        "{enedis}: {}",
        response.text().await.unwrap()
    );
    let back = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&format!("{standby_web}/redirect?")),
        "{back}"
    );
    let response = http.get(&back).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    let standby = pair.second.process.log();
    assert!(
        standby.contains("queued for the leader's XMPP session"),
        "{standby}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let message = loop {
        let stanza = tokio::time::timeout_at(deadline, app.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("no consent notice:\n{}", pair.first.process.log()))
            .expect("the peer's session");
        if let Stanza::Message(message) = stanza
            && message.payloads.iter().any(|p| p.is("x", NS_AUTHORIZE))
        {
            break message;
        }
    };
    let x = message
        .payloads
        .iter()
        .find(|p| p.is("x", NS_AUTHORIZE))
        .unwrap();
    let texts = |name: &str| -> Vec<String> {
        x.children()
            .filter(|c| c.is(name, NS_AUTHORIZE))
            .map(Element::text)
            .collect()
    };
    assert_eq!(texts("usage-point"), [PRM]);
    assert_eq!(texts("state"), ["standby-7"]);
    assert!(
        pair.first
            .process
            .log()
            .contains("consent notification queued by a standby sent")
    );
    // Sent once: the queue is empty.
    assert_eq!(pair.count("SELECT count(*) FROM notifications").await, 0);
    pair.second.process.stop().await;
    pair.first.process.stop().await;
}

/// The leader's store writes fail (its role's sessions turned read-only, the
/// standby's not) for 30 s while the standby waits: the leader hands over as on
/// SIGTERM (its stream closed before its lock is released) and stands by
/// without asking for the lock while its writes fail; the standby, told of
/// the handover, serves at once and answers the peer. Once the old leader's
/// writes work again, it waits for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_store_writes_fail_hands_over_to_the_standby() {
    let mut pair = Pair::start_as(AgentSettings::with_peers(vec![peer("app", &[PRM])]), true).await;
    let app = Peer::login(&pair.prosody, "app@localhost/a").await;
    answered(&app, 2).await;
    // New sessions of the leader's role are read-only; its pool's sessions are
    // ended, so it opens new ones. Its lock connection stays.
    let role = format!("{}_first", pair.url.rsplit('/').next().unwrap());
    let terminate_pool = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE usename = '{role}' AND application_name <> 'quoalise-agent leader lock'"
    );
    let broken = Instant::now();
    let sql = format!("ALTER ROLE {role} SET default_transaction_read_only = on; {terminate_pool}");
    pair.db(move |db| db.batch_execute(&sql).unwrap()).await;
    // /healthz says so meanwhile.
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = pair.first.process.healthz().await;
        if let Some((503, body)) = &answer
            && body.contains("store: FAILED")
        {
            break;
        }
        assert!(Instant::now() < give_up, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        pair.first
            .process
            .wait_log("leader: lock released", Duration::from_secs(90))
            .await,
        "{}",
        pair.first.process.log()
    );
    assert!(
        broken.elapsed() >= Duration::from_secs(30),
        "not before 30 s"
    );
    let old = pair.first.process.log();
    assert!(old.contains("leader: handing over to a standby"), "{old}");
    let stopped = old.find("XMPP: stopped").unwrap_or_else(|| panic!("{old}"));
    let released = old
        .find("leader: lock released")
        .unwrap_or_else(|| panic!("{old}"));
    assert!(stopped < released, "the stream closes first:\n{old}");

    wait_role(&mut pair.second.process, "leader", Duration::from_secs(30)).await;
    pair.second
        .process
        .wait_healthy(Duration::from_secs(30))
        .await;
    let log = pair.second.process.log();
    assert!(log.contains("previous_handed_over=true"), "{log}");
    answered(&app, 3).await;
    sessions_did_not_overlap(&pair.prosody, 2);

    // The old leader stands by, and does not ask while its writes fail.
    assert!(
        pair.first
            .process
            .wait_log(
                "standby: not asking for the leader's lock while the store's writes fail",
                Duration::from_secs(20)
            )
            .await,
        "{}",
        pair.first.process.log()
    );
    assert_eq!(pair.waiting_for_the_lock().await, 0);
    // Its writes work again: it waits for the lock.
    let sql = format!("ALTER ROLE {role} RESET default_transaction_read_only; {terminate_pool}");
    pair.db(move |db| db.batch_execute(&sql).unwrap()).await;
    let give_up = Instant::now() + Duration::from_secs(60);
    while pair.waiting_for_the_lock().await != 1 {
        assert!(Instant::now() < give_up, "{}", pair.first.process.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        pair.first.process.try_status().is_none(),
        "one process all along"
    );
    pair.second.process.stop().await;
    pair.first.process.stop().await;
}
