//! The quota scheduler's hour kept in the store, so that a restart (a crash, an
//! upgrade, systemd) does not start again with a full hour and burst past
//! Enedis' limit.
//!
//! At start-up [`restore`] seeds a [`QuotaLimiter`] from the store's ledger
//! ([`crate::store::ledger`]): the calls of the last hour count against the hour
//! and against their peers' caps, and a pause Enedis asked for resumes. Then
//! [`keep`] writes the limiter's grants and pauses behind it: the limiter only
//! appends to an in-memory journal (no I/O on the request path), and every
//! [`FLUSH_EVERY`] the batch is written in one transaction committed to disk on
//! the blocking pool. A crash (or a power cut) loses at most the calls of the
//! last [`FLUSH_EVERY`] (five at Enedis' five a second); a clean stop
//! (SIGTERM) writes everything first.
//!
//! Several instances on one PostgreSQL (`crate::daemon::leader`): every
//! instance writes its own calls (a standby resolves consents on its pages),
//! and the one that takes the lead counts the ledger's hour with
//! [`take_over`], so the previous leader's calls count and its own are not
//! counted twice.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::limiter::{Class, Granted, QuotaLimiter};
use crate::store::{QuotaCall, Store, StoreError};

/// The Data Connect application's quota in the ledger.
pub const DATA_CONNECT: &str = "data-connect";
/// The SGE application's quota in the ledger.
pub const SGE: &str = "sge";
/// How often the journal is written: at most the calls a crash can lose.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often calls older than an hour are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most calls kept for a later write while the store refuses them (an hour
/// at five a second, and some); past that the oldest are dropped.
const MAX_PENDING: usize = 20_000;

/// What [`restore`] found in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Calls of the last hour now counted.
    pub calls: usize,
    /// How long the pause Enedis asked for still runs, if it does.
    pub pause: Option<Duration>,
}

/// UTC milliseconds now.
fn wall_now() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `at` in UTC milliseconds, knowing that `now` is `now_ms`.
fn to_wall(at: Instant, now: Instant, now_ms: i64) -> i64 {
    let ago = now.saturating_duration_since(at).as_millis();
    now_ms.saturating_sub(i64::try_from(ago).unwrap_or(i64::MAX))
}

/// `at_ms` as an instant, knowing that `now` is `now_ms` (instants after now
/// are now).
fn to_instant(at_ms: i64, now: Instant, now_ms: i64) -> Instant {
    let ago = Duration::from_millis(u64::try_from(now_ms.saturating_sub(at_ms)).unwrap_or(0));
    now.checked_sub(ago).unwrap_or(now)
}

/// Seeds `limiter` with `platform`'s calls of the last hour and its running
/// pause, from `store`, and starts its journal for [`keep`].
pub async fn restore(
    limiter: &QuotaLimiter,
    store: &Store,
    platform: &'static str,
) -> Result<Restored, StoreError> {
    let (calls, pause, now, restored) = read(store, platform, &[]).await?;
    limiter.keep_journal();
    limiter.restore(calls, pause.map(|p| now + p));
    Ok(restored)
}

/// [`restore`] for an instance that took the lead: its limiter has counted its
/// own calls since it started, and [`keep`] has written them to the ledger
/// (but `unwritten`, which [`keep`] returned when it was stopped). The hour
/// becomes the ledger's, those and what the journal still holds
/// ([`QuotaLimiter::replace_hour`]): the previous leader's calls count, and none
/// of this instance's counts twice. Give `unwritten` to the next [`keep_from`].
pub async fn take_over(
    limiter: &QuotaLimiter,
    store: &Store,
    platform: &'static str,
    unwritten: &[QuotaCall],
) -> Result<Restored, StoreError> {
    let (calls, pause, now, restored) = read(store, platform, unwritten).await?;
    limiter.keep_journal();
    limiter.replace_hour(calls, pause.map(|p| now + p));
    Ok(restored)
}

/// `platform`'s ledger of the last hour with `extra` calls, as grants of the
/// limiter's clock; the pause still running; the instant they are relative to.
async fn read(
    store: &Store,
    platform: &'static str,
    extra: &[QuotaCall],
) -> Result<(Vec<Granted>, Option<Duration>, Instant, Restored), StoreError> {
    let now_ms = wall_now();
    let ledger = store
        .call(move |s| s.quota_ledger(platform, now_ms))
        .await?;
    let now = Instant::now();
    let calls: Vec<Granted> = ledger
        .calls
        .iter()
        .chain(extra)
        .map(|call| Granted {
            at: to_instant(call.at_ms, now, now_ms),
            peer: call.peer.as_deref().map(Arc::from),
            class: if call.background {
                Class::Background
            } else {
                Class::Interactive
            },
        })
        .collect();
    let pause = ledger
        .pause_until_ms
        .map(|until| Duration::from_millis(u64::try_from(until - now_ms).unwrap_or(0)));
    let restored = Restored {
        calls: calls.len(),
        pause,
    };
    Ok((calls, pause, now, restored))
}

/// Writes `limiter`'s journal into `store`'s ledger for `platform` every
/// [`FLUSH_EVERY`] and prunes the ledger, until `stop`; then writes what is
/// left and returns the calls it could not write (none unless the store
/// refuses). A write that fails is logged and tried again with the next.
pub async fn keep(
    limiter: Arc<QuotaLimiter>,
    store: Store,
    platform: &'static str,
    stop: CancellationToken,
) -> Vec<QuotaCall> {
    keep_from(limiter, store, platform, stop, Vec::new()).await
}

/// [`keep`], writing `pending` (what an earlier [`keep`] returned) first.
pub async fn keep_from(
    limiter: Arc<QuotaLimiter>,
    store: Store,
    platform: &'static str,
    stop: CancellationToken,
    mut pending: Vec<QuotaCall>,
) -> Vec<QuotaCall> {
    limiter.keep_journal();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = Instant::now();
    let mut pause: Option<i64> = None;
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = flush.tick() => false,
            () = stop.cancelled() => true,
        };
        let journal = limiter.take_journal();
        let now = Instant::now();
        let now_ms = wall_now();
        pending.extend(journal.calls.into_iter().map(|g| QuotaCall {
            at_ms: to_wall(g.at, now, now_ms),
            peer: g.peer.map(|p| p.to_string()),
            background: g.class == Class::Background,
        }));
        if pending.len() > MAX_PENDING {
            let drop = pending.len() - MAX_PENDING;
            pending.drain(..drop);
        }
        if let Some(until) = journal.pause_until {
            let until = now_ms
                + i64::try_from(until.saturating_duration_since(now).as_millis())
                    .unwrap_or(i64::MAX / 2);
            pause = Some(pause.map_or(until, |p| p.max(until)));
        }
        let prune = stopping || now.duration_since(last_prune) >= PRUNE_EVERY;
        if !pending.is_empty() || pause.is_some() || prune {
            let calls = pending.clone();
            // Outer: the calls and the pause; inner: the prune, after them.
            let written = store
                .call(move |s| {
                    s.record_quota(platform, &calls, pause)?;
                    Ok(if prune {
                        s.prune_quota_ledger(now_ms).map(|_| ())
                    } else {
                        Ok(())
                    })
                })
                .await;
            match written {
                Ok(pruned) => {
                    pending.clear();
                    pause = None;
                    match pruned {
                        Ok(()) if prune => last_prune = now,
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(platform, error = %e, "cannot prune the quota ledger")
                        }
                    }
                    if failing {
                        failing = false;
                        tracing::info!(platform, "the quota ledger is written again");
                    }
                }
                Err(e) => {
                    if !failing {
                        failing = true;
                        tracing::warn!(platform, error = %e, pending = pending.len(), "cannot write the quota ledger: a restart now would not count these calls");
                    }
                }
            }
        }
        if stopping {
            return pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::limiter::{Ask, Limit};

    /// Through a real SQLite file: the calls and the pause a limiter journals go
    /// into the ledger (the last ones at the stop), and the next limiter starts
    /// with them: the hour's count, a peer's cap, the pause's end.
    #[tokio::test]
    async fn the_hour_and_a_pause_go_through_the_store_to_the_next_limiter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let first = Arc::new(QuotaLimiter::new(100, 10));
        let none = restore(&first, &store, DATA_CONNECT).await.unwrap();
        assert_eq!((none.calls, none.pause), (0, None));
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep(
            first.clone(),
            store.clone(),
            DATA_CONNECT,
            stop.clone(),
        ));
        let far = Instant::now() + Duration::from_secs(10);
        let capped = Ask::peer("a@x", Class::Interactive).with_budget(1, Some(2));
        for ask in [
            capped.clone(),
            capped.clone(),
            Ask::peer("b@x", Class::Background),
        ] {
            first.acquire(&ask, far).await.unwrap();
        }
        let paused_at = Instant::now();
        first.pause(Some(Duration::from_secs(30)));
        stop.cancel();
        task.await.unwrap();

        let next = QuotaLimiter::new(100, 10);
        let restored = restore(&next, &store, DATA_CONNECT).await.unwrap();
        assert_eq!(restored.calls, 3);
        let pause = restored.pause.unwrap();
        let elapsed = paused_at.elapsed();
        assert!(
            pause <= Duration::from_secs(30)
                && pause + elapsed + Duration::from_millis(2) >= Duration::from_secs(30),
            "{pause:?} left of a 30 s pause, {elapsed:?} later"
        );
        let state = next.state();
        assert_eq!(state.used_this_hour, 3);
        assert!(state.next_free_in > Duration::ZERO && state.next_free_in <= pause);
        // The capped peer's two calls count against its cap, past the pause.
        let refused = next
            .acquire(&capped, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(refused.limit, Limit::PeerBudget);
        assert!(refused.next_slot_in > Duration::from_secs(3_500));
        // SGE's quota is another one.
        let sge = QuotaLimiter::new(1, 10);
        assert_eq!(restore(&sge, &store, SGE).await.unwrap().calls, 0);
    }

    /// A standby writes its own calls (a consent resolved on its pages) and
    /// takes the lead: the hour is the ledger's (the previous leader's calls and
    /// its own) and what its journal still holds, each call once; what it had
    /// not written is written by the next keeper.
    #[tokio::test]
    async fn taking_the_lead_counts_the_previous_leader_and_each_own_call_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("agent.db")).unwrap();
        let standby = Arc::new(QuotaLimiter::new(100, 10));
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep(
            standby.clone(),
            store.clone(),
            DATA_CONNECT,
            stop.clone(),
        ));
        tokio::task::yield_now().await;
        let far = Instant::now() + Duration::from_secs(10);
        let peer = Ask::peer("a@x", Class::Interactive);
        for _ in 0..2 {
            standby.acquire(&peer, far).await.unwrap();
        }
        // The leader's three calls, written by its own keeper.
        let now_ms = wall_now();
        let theirs: Vec<QuotaCall> = (0..3)
            .map(|i| QuotaCall {
                at_ms: now_ms - 60_000 + i,
                peer: Some("a@x".into()),
                background: false,
            })
            .collect();
        store.record_quota(DATA_CONNECT, &theirs, None).unwrap();
        stop.cancel();
        let unwritten = keeper.await.unwrap();
        assert!(unwritten.is_empty());
        // A call after the keeper stopped, before the ledger is read.
        standby.acquire(&peer, far).await.unwrap();

        let restored = take_over(&standby, &store, DATA_CONNECT, &unwritten)
            .await
            .unwrap();
        assert_eq!(restored.calls, 5, "the ledger: 3 of the leader's, 2 own");
        assert_eq!(standby.state().used_this_hour, 6, "and the unwritten one");
        // The next keeper writes the unwritten one: six calls for the next leader.
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep_from(
            standby.clone(),
            store.clone(),
            DATA_CONNECT,
            stop.clone(),
            unwritten,
        ));
        stop.cancel();
        assert!(keeper.await.unwrap().is_empty());
        let next = QuotaLimiter::new(100, 10);
        assert_eq!(restore(&next, &store, DATA_CONNECT).await.unwrap().calls, 6);
    }
}
