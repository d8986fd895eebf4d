//! The leader's lock (`daemon::leader`) on a real PostgreSQL, without the rest
//! of the agent: one holder at a time, waiters that get it the instant it is
//! released, what a new leader knows of how the previous one left (a clean
//! handover, or not: then it waits the grace period), and a lost lock noticed
//! by the holder: its session terminated, or its server process stopped (what
//! a network partition looks like from the agent).

use std::time::{Duration, Instant};

use quoalise_agent::config::Secret;
use quoalise_agent::daemon::leader::{self, FENCE_WITHIN, Lock, TAKEOVER_GRACE};
use quoalise_agent::store::Store;

use crate::common::postgres;

/// A store, closed on a thread of its own: the blocking driver runs its own
/// runtime, which cannot start on the test's.
struct Off(Option<Store>);

impl std::ops::Deref for Off {
    type Target = Store;
    fn deref(&self) -> &Store {
        self.0.as_ref().unwrap()
    }
}

impl Drop for Off {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            let _ = std::thread::spawn(move || drop(store)).join();
        }
    }
}

/// A store of its own (the blocking driver runs on the blocking pool, as in
/// the agent).
async fn open(url: &str) -> Off {
    let url = url.to_owned();
    Off(Some(
        tokio::task::spawn_blocking(move || Store::connect(&Secret::new(url), None).unwrap())
            .await
            .unwrap(),
    ))
}

/// `pg_terminate_backend(pid)` as the superuser.
async fn terminate(url: &str, pid: i32) -> bool {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        postgres::shared()
            .client_of(&url)
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0)
    })
    .await
    .unwrap()
}

async fn acquire(store: &Store) -> Lock {
    leader::acquire(store.postgres().unwrap().clone(), store.clone()).await
}

/// Waits until `n` instances wait for `lock`.
async fn until_waiting(lock: &Lock, n: i64) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while lock.standbys_waiting().await.unwrap() != n {
        assert!(Instant::now() < give_up, "never {n} waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_and_the_next_knows_whether_the_previous_handed_over() {
    let url = tokio::task::spawn_blocking(|| postgres::shared().fresh_database())
        .await
        .unwrap();
    let (a, b, c) = (open(&url).await, open(&url).await, open(&url).await);

    // Nobody said anything before: the first leader waits the grace period.
    let started = Instant::now();
    let first = acquire(&a).await;
    assert!(!first.handed_over);
    assert!(started.elapsed() >= TAKEOVER_GRACE);

    let (b2, c2) = (b.clone(), c.clone());
    let mut b_waits = tokio::spawn(async move { acquire(&b2).await });
    let mut c_waits = tokio::spawn(async move { acquire(&c2).await });
    until_waiting(&first, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !b_waits.is_finished() && !c_waits.is_finished(),
        "one holder"
    );

    // A clean handover: one waiter has the lock at once, and knows.
    let released = Instant::now();
    first.hand_over().await;
    let (second, mut third_waits) = tokio::select! {
        lock = &mut b_waits => (lock.unwrap(), c_waits),
        lock = &mut c_waits => (lock.unwrap(), b_waits),
    };
    assert!(second.handed_over);
    assert!(
        released.elapsed() < TAKEOVER_GRACE,
        "no grace period after a clean handover: {:?}",
        released.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third_waits.is_finished(), "one holder");

    // The second leader dies without a word (its connection closes): the third
    // heard it take the lock after the handover, so it waits the grace period.
    let dropped = Instant::now();
    drop(second);
    let third = (&mut third_waits).await.unwrap();
    assert!(!third.handed_over);
    assert!(dropped.elapsed() >= TAKEOVER_GRACE);
    third.hand_over().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_lock_session_is_lost_at_once_and_the_waiter_gets_it() {
    let url = tokio::task::spawn_blocking(|| postgres::shared().fresh_database())
        .await
        .unwrap();
    let (a, b) = (open(&url).await, open(&url).await);
    let mut lock = acquire(&a).await;
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { acquire(&b2).await });
    until_waiting(&lock, 1).await;

    let terminated = Instant::now();
    assert!(terminate(&url, lock.pid).await);
    let why = tokio::time::timeout(FENCE_WITHIN, lock.lost())
        .await
        .expect("the holder learns it within FENCE_WITHIN");
    assert!(
        terminated.elapsed() < Duration::from_secs(1),
        "at once: {:?}",
        terminated.elapsed()
    );
    assert!(why.contains("lock connection"), "{why}");
    // The waiter got the lock the instant the session ended; nobody said it
    // was a handover.
    let next = waiting.await.unwrap();
    assert!(!next.handed_over);
    assert_ne!(next.pid, lock.pid);
}

/// The holder's server process stopped (SIGSTOP): its connection stays open
/// but nothing answers, as in a network partition. The heartbeat notices
/// within [`FENCE_WITHIN`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_connection_that_stops_answering_is_lost_within_the_fence_time() {
    let url = tokio::task::spawn_blocking(|| postgres::shared().fresh_database())
        .await
        .unwrap();
    let a = open(&url).await;
    let mut lock = acquire(&a).await;
    let pid = lock.pid.to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let stopped = Instant::now();
    let lost = tokio::time::timeout(FENCE_WITHIN + Duration::from_millis(500), lock.lost()).await;
    signal("-CONT");
    let why = lost.unwrap_or_else(|_| panic!("not noticed within {FENCE_WITHIN:?}"));
    assert!(why.contains("did not answer"), "{why}");
    assert!(stopped.elapsed() <= FENCE_WITHIN + Duration::from_millis(500));
}
