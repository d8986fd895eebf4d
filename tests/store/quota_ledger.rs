//! The Enedis quota's ledger on both databases: calls and pauses recorded, read
//! back by another handle (what a restarted agent, or the standby taking over
//! from a leader, seeds its quota from), and pruned past the hour; two agents
//! writing the same ledger at once. Also what a write of the ledger costs,
//! printed (the agent writes one batch a second).

use std::time::{Duration, Instant};

use quoalise_agent::store::ledger::HOUR_MS;
use quoalise_agent::store::{QuotaCall, QuotaLedger, Store};

use crate::backends::TestStore;

const DC: &str = "data-connect";
const SGE: &str = "sge";

fn call(at_ms: i64, peer: Option<&str>, background: bool) -> QuotaCall {
    QuotaCall {
        at_ms,
        peer: peer.map(str::to_owned),
        background,
    }
}

/// `sql`'s one number, read on a connection of the test's own, as a second
/// process would.
fn count(t: &TestStore, sql: &str) -> i64 {
    match t.postgres_client() {
        Some(mut client) => client.query_one(sql, &[]).unwrap().get(0),
        None => rusqlite::Connection::open(t.dir.path().join("agent.db"))
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap(),
    }
}

/// Runs `sql` on a connection of the test's own.
fn execute(t: &TestStore, sql: &str) -> Result<(), String> {
    match t.postgres_client() {
        Some(mut client) => client.batch_execute(sql).map_err(|e| format!("{e:?}")),
        None => rusqlite::Connection::open(t.dir.path().join("agent.db"))
            .unwrap()
            .execute_batch(sql)
            .map_err(|e| e.to_string()),
    }
}

on_both! {
    fn the_ledger_survives_a_reopen_and_forgets_past_the_hour(t: &TestStore) {
        let now = jiff::Timestamp::now().as_millisecond();
        let old = call(now - HOUR_MS - 1, Some("app@example.org"), false);
        let recent = [
            call(now - HOUR_MS + 1_000, None, false),
            call(now - 60_000, Some("app@example.org"), false),
            call(now - 1_000, Some("sub@example.org"), true),
        ];
        {
            let store = &t.store;
            // Two batches, out of order, and a pause; another platform apart.
            store
                .record_quota(DC, &[recent[2].clone(), old.clone()], None)
                .unwrap();
            store
                .record_quota(DC, &recent[..2], Some(now + 30_000))
                .unwrap();
            // A shorter pause recorded later does not shorten the first.
            store.record_quota(DC, &[], Some(now + 5_000)).unwrap();
            store
                .record_quota(SGE, &[call(now - 10, None, false)], None)
                .unwrap();
            // Nothing to write is no write.
            store.record_quota(SGE, &[], None).unwrap();
        }
        let store = t.reopen();
        let ledger = store.quota_ledger(DC, now).unwrap();
        assert_eq!(
            ledger,
            QuotaLedger {
                calls: recent.to_vec(),
                pause_until_ms: Some(now + 30_000),
            },
            "the hour's calls oldest first, without the older one, and the longest pause"
        );
        assert_eq!(store.quota_ledger(SGE, now).unwrap().calls.len(), 1);
        // Once the pause is over it is not returned.
        assert_eq!(
            store.quota_ledger(DC, now + 30_000).unwrap().pause_until_ms,
            None
        );

        // Pruning at `now` drops the old call only; half an hour later, the calls
        // of before then, and the pause that ended.
        assert_eq!(store.prune_quota_ledger(now).unwrap(), 1);
        let rows = || count(t, "SELECT count(*) FROM quota_calls");
        assert_eq!(rows(), 4);
        let later = now + HOUR_MS / 2 + 1_000;
        assert_eq!(store.prune_quota_ledger(later).unwrap(), 2);
        drop(store);
        assert_eq!(rows(), 3, "two calls of Data Connect, one of SGE");
        let store = t.reopen();
        let ledger = store.quota_ledger(DC, later).unwrap();
        assert_eq!(ledger.calls, recent[1..].to_vec());
        assert_eq!(ledger.pause_until_ms, None);
    }

    /// Calls of one instant come back in the order they were recorded.
    fn calls_of_one_instant_keep_their_order(t: &TestStore) {
        let now = jiff::Timestamp::now().as_millisecond();
        let calls: Vec<QuotaCall> = ["c@x", "a@x", "b@x", "d@x"]
            .iter()
            .enumerate()
            .map(|(i, peer)| call(now - 5, Some(peer), i % 2 == 0))
            .collect();
        t.store.record_quota(DC, &calls[..2], None).unwrap();
        t.store.record_quota(DC, &calls[2..], None).unwrap();
        assert_eq!(t.reopen().quota_ledger(DC, now).unwrap().calls, calls);
    }

    fn a_call_of_an_unknown_class_or_platform_is_refused_by_the_schema(t: &TestStore) {
        let store = &t.store;
        assert!(
            store
                .record_quota("", &[call(1, None, false)], None)
                .is_err()
        );
        assert!(
            store
                .record_quota(&"p".repeat(33), &[call(1, None, false)], None)
                .is_err()
        );
        let urgent =
            execute(t, "INSERT INTO quota_calls (platform, at_ms, class) VALUES ('sge', 1, 'urgent')");
        assert!(urgent.is_err(), "{urgent:?}");
        assert!(store.quota_ledger(SGE, 2).unwrap().calls.is_empty());
        assert_eq!(count(t, "SELECT count(*) FROM quota_calls"), 0, "nothing half written");
    }

    /// Two agents on one store (a leader and the instance that took over, or
    /// both for a moment): each sees what the other recorded, calls add up,
    /// the later pause wins whatever the order of the commits, and both
    /// pruning at once delete each row once.
    fn two_agents_share_one_ledger(t: &TestStore) {
        let now = jiff::Timestamp::now().as_millisecond();
        let (a, b) = (t.store.clone(), t.reopen());
        let threads: Vec<_> = [(a.clone(), "a@x"), (b.clone(), "b@x")]
            .into_iter()
            .enumerate()
            .map(|(n, (store, peer))| {
                std::thread::spawn(move || {
                    for i in 0..20 {
                        let at = now - 1_000 + i;
                        store
                            .record_quota(
                                DC,
                                &[call(at, Some(peer), false), call(at, Some(peer), true)],
                                // Pauses of both, each one later than the last.
                                Some(now + 10_000 + 2 * i + n as i64),
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        for store in [&a, &b] {
            let ledger = store.quota_ledger(DC, now).unwrap();
            assert_eq!(ledger.calls.len(), 80);
            assert_eq!(ledger.calls.iter().filter(|c| c.peer.as_deref() == Some("a@x")).count(), 40);
            assert!(ledger.calls.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "oldest first");
            assert_eq!(ledger.pause_until_ms, Some(now + 10_000 + 2 * 19 + 1));
        }
        // Both prune at once, an hour and a minute later: every call and the
        // pause go, each counted once.
        let later = now + HOUR_MS + 60_000;
        let pruners: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|store| std::thread::spawn(move || store.prune_quota_ledger(later).unwrap()))
            .collect();
        let pruned: usize = pruners.into_iter().map(|p| p.join().unwrap()).sum();
        assert_eq!(pruned, 81);
        assert_eq!(a.quota_ledger(DC, now).unwrap(), QuotaLedger::default());
    }
}

/// Nanoseconds this thread has run on a CPU (Linux's schedstat), if known.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn measure(write: &dyn Fn(u32), rounds: u32) -> (Duration, String) {
    let (started, cpu) = (Instant::now(), cpu_ns());
    for i in 0..rounds {
        write(i);
    }
    let cpu = cpu_ns()
        .zip(cpu)
        .map_or("unknown".to_owned(), |(after, before)| {
            format!(
                "{:?}",
                Duration::from_nanos((after - before) / u64::from(rounds))
            )
        });
    (started.elapsed() / rounds, cpu)
}

fn cost_of_writes(kind: &str, store: &Store) {
    let now = jiff::Timestamp::now().as_millisecond();
    const ROUNDS: u32 = 40;
    // One synced transaction per call (what the request path must not do).
    let (per_call, per_call_cpu) = measure(
        &|i| {
            store
                .record_quota(DC, &[call(now + i64::from(i), Some("a@x"), false)], None)
                .unwrap();
        },
        ROUNDS,
    );
    // One synced transaction a second holding the second's five calls (Enedis'
    // five calls a second), as `upstream::quota_ledger::keep` writes.
    let batch: Vec<QuotaCall> = (0..5).map(|i| call(now + i, Some("a@x"), false)).collect();
    let (per_batch, per_batch_cpu) =
        measure(&|_| store.record_quota(DC, &batch, None).unwrap(), ROUNDS);
    println!(
        "quota ledger on {kind}: one call a synced write: {per_call:?} ({per_call_cpu} of CPU); \
         a synced batch of 5 calls: {per_batch:?} ({per_batch_cpu} of CPU)"
    );
    assert!(
        per_batch < Duration::from_secs(1),
        "a batch a second keeps up"
    );
}

on_both! {
    /// What the write-behind costs against a write per call, on this machine's
    /// disk (the test server does not fsync): printed, not asserted (a test
    /// cannot know the disk).
    fn the_cost_of_a_batch_a_second_against_a_write_per_call(t: &TestStore) {
        cost_of_writes(&format!("{:?}", t.kind), &t.store);
    }
}
