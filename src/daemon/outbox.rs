//! Consent notifications with a standby: the consent pages run on every
//! instance, the XMPP session on the leader only.
//!
//! [`RoleNotifier`] is the web layer's [`Notifier`]: on the leader it sends on
//! the XMPP session at once (as a single agent does); on a standby it queues
//! the notification in the store ([`crate::store::outbox`]). The leader sends
//! what is queued ([`drain`]) while its session is up, and removes each
//! notification once it is on the stream.

use std::time::Duration;

use async_trait::async_trait;

use super::leader::{Role, RoleCell};
use crate::store::{QueuedNotification, Store, now_seconds};
use crate::web::{ConsentNotification, Notifier, NotifyError};
use crate::xmpp::XmppHandle;

/// How often the leader looks for notifications queued by a standby.
pub const DRAIN_EVERY: Duration = Duration::from_secs(2);
/// Most notifications read from the store at once.
const BATCH: usize = 50;

/// Sends on the XMPP session when leading, queues in the store otherwise.
pub struct RoleNotifier {
    pub xmpp: XmppHandle,
    pub store: Store,
    pub role: RoleCell,
}

#[async_trait]
impl Notifier for RoleNotifier {
    async fn notify(
        &self,
        peer: &str,
        notification: &ConsentNotification,
    ) -> Result<(), NotifyError> {
        if self.role.get() == Role::Leader {
            return self.xmpp.notify(peer, notification).await;
        }
        let peer_owned = peer.to_owned();
        let usage_points = notification.usage_points.clone();
        let state = notification.peer_state.clone();
        let id = self
            .store
            .call(move |s| {
                s.queue_notification(&peer_owned, &usage_points, state.as_deref(), now_seconds())
            })
            .await
            .map_err(|e| NotifyError::Queue(e.to_string()))?;
        tracing::info!(
            peer,
            queued = id,
            "standby: the peer's consent notification is queued for the leader's XMPP session"
        );
        Ok(())
    }
}

/// The leader's task: every [`DRAIN_EVERY`] while the session is up, sends the
/// notifications standbys queued, oldest first, and removes each once it is on
/// the stream. Runs until aborted.
pub async fn drain(store: Store, xmpp: XmppHandle) {
    let mut every = tokio::time::interval(DRAIN_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        every.tick().await;
        if !xmpp.is_up() {
            continue;
        }
        match send_queued(&store, &xmpp).await {
            Ok(()) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot send the consent notifications queued by a standby; trying again");
            }
            Err(_) => {}
        }
    }
}

/// One pass of [`drain`].
async fn send_queued(store: &Store, xmpp: &XmppHandle) -> Result<(), String> {
    let queued = store
        .call(|s| s.queued_notifications(BATCH))
        .await
        .map_err(|e| e.to_string())?;
    for QueuedNotification {
        id,
        peer,
        usage_points,
        peer_state,
        queued_at,
    } in queued
    {
        let notification = ConsentNotification {
            usage_points,
            peer_state,
        };
        match xmpp.notify(&peer, &notification).await {
            Ok(()) => tracing::info!(
                peer = %peer,
                queued = id,
                waited_secs = now_seconds().saturating_sub(queued_at),
                "consent notification queued by a standby sent"
            ),
            // Never sendable: kept, it would block nothing but come back forever.
            Err(e @ NotifyError::BadJid(_)) => {
                tracing::error!(peer = %peer, queued = id, error = %e, "a queued consent notification cannot be sent; dropped")
            }
            Err(e) => return Err(e.to_string()),
        }
        store
            .call(move |s| s.remove_notification(id))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
