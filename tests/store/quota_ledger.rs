//! The Enedis quota's ledger in a real SQLite file: calls and pauses recorded,
//! read back after the file is closed and opened again (what a restarted agent
//! seeds its quota from), and pruned past the hour. Also what a write of the
//! ledger costs, printed (the agent writes one batch a second).

use std::time::{Duration, Instant};

use quoalise_agent::store::ledger::HOUR_MS;
use quoalise_agent::store::{QuotaCall, QuotaLedger, Store};

const DC: &str = "data-connect";
const SGE: &str = "sge";

fn call(at_ms: i64, peer: Option<&str>, background: bool) -> QuotaCall {
    QuotaCall {
        at_ms,
        peer: peer.map(str::to_owned),
        background,
    }
}

#[test]
fn the_ledger_survives_a_reopen_and_forgets_past_the_hour() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let now = jiff::Timestamp::now().as_millisecond();
    let old = call(now - HOUR_MS - 1, Some("app@example.org"), false);
    let recent = [
        call(now - HOUR_MS + 1_000, None, false),
        call(now - 60_000, Some("app@example.org"), false),
        call(now - 1_000, Some("sub@example.org"), true),
    ];
    {
        let store = Store::open(&path).unwrap();
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
    let store = Store::open(&path).unwrap();
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
    // Counted on a connection of the test's own, as a second process would.
    let rows = || -> i64 {
        rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM quota_calls", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(rows(), 4);
    let later = now + HOUR_MS / 2 + 1_000;
    assert_eq!(store.prune_quota_ledger(later).unwrap(), 2);
    drop(store);
    assert_eq!(rows(), 3, "two calls of Data Connect, one of SGE");
    let store = Store::open(&path).unwrap();
    let ledger = store.quota_ledger(DC, later).unwrap();
    assert_eq!(ledger.calls, recent[1..].to_vec());
    assert_eq!(ledger.pause_until_ms, None);
}

#[test]
fn a_call_of_an_unknown_class_or_platform_is_refused_by_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let store = Store::open(&path).unwrap();
    assert!(
        store
            .record_quota("", &[call(1, None, false)], None)
            .is_err()
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let urgent = conn.execute(
        "INSERT INTO quota_calls (platform, at_ms, class) VALUES ('sge', 1, 'urgent')",
        [],
    );
    assert!(urgent.is_err(), "{urgent:?}");
    assert!(store.quota_ledger(SGE, 2).unwrap().calls.is_empty());
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

/// What the write-behind costs against a write per call, on this machine's
/// disk: printed, not asserted (a test cannot know the disk).
#[test]
fn the_cost_of_a_batch_a_second_against_a_write_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("agent.db")).unwrap();
    let now = jiff::Timestamp::now().as_millisecond();
    const ROUNDS: u32 = 40;
    let measure = |write: &dyn Fn(u32)| {
        let (started, cpu) = (Instant::now(), cpu_ns());
        for i in 0..ROUNDS {
            write(i);
        }
        let cpu = cpu_ns()
            .zip(cpu)
            .map_or("unknown".to_owned(), |(after, before)| {
                format!(
                    "{:?}",
                    Duration::from_nanos((after - before) / u64::from(ROUNDS))
                )
            });
        (started.elapsed() / ROUNDS, cpu)
    };
    // One synced transaction per call (what the request path must not do).
    let (per_call, per_call_cpu) = measure(&|i| {
        store
            .record_quota(DC, &[call(now + i64::from(i), Some("a@x"), false)], None)
            .unwrap();
    });
    // One synced transaction a second holding the second's five calls (Enedis'
    // five calls a second), as `upstream::quota_ledger::keep` writes.
    let batch: Vec<QuotaCall> = (0..5).map(|i| call(now + i, Some("a@x"), false)).collect();
    let (per_batch, per_batch_cpu) = measure(&|_| store.record_quota(DC, &batch, None).unwrap());
    println!(
        "quota ledger: one call a synced write: {per_call:?} ({per_call_cpu} of CPU); \
         a synced batch of 5 calls: {per_batch:?} ({per_batch_cpu} of CPU)"
    );
    assert!(
        per_batch < Duration::from_secs(1),
        "a batch a second keeps up"
    );
}
