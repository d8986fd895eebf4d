//! The cheap-to-clone [`XmppHandle`] through which the rest of the agent talks
//! on its XMPP session: send stanzas (sized against the server's limit), run iq
//! round trips and know whether the session is up. The session's driver
//! ([`super::session`]) owns the other end of its queue; the command router
//! only holds a handle, so it depends on this file and not on the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_xmpp::Stanza;
use xmpp_parsers::iq::{Iq, IqRequestPayload};
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza_error::StanzaError;

use super::wire::{Splice, Splices, StanzaLimit, stanza_size};

/// A random identifier for sessions and outgoing iqs (128 bits, hex).
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Where the session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// No session yet (first connection attempts).
    Connecting,
    /// Bound and serving.
    Up,
    /// The connection broke; reconnecting (stanzas queue until then).
    Suspended,
    /// Shut down.
    Stopped,
}

/// Why an outgoing stanza could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("the XMPP session has stopped")]
    Stopped,
    /// The stanza is larger than the server accepts: sending it would make the
    /// server close the agent's whole stream. Nothing was sent.
    #[error("the stanza is {size} bytes, more than the {limit} bytes the XMPP server accepts")]
    TooLarge { size: usize, limit: usize },
    /// The stanza cannot be serialised (a bug); nothing was sent.
    #[error("the stanza cannot be serialised: {0}")]
    Unserialisable(String),
}

/// A stanza on its way to the stream, with the payload to splice into it.
pub(crate) struct Outgoing {
    pub(super) stanza: Box<Stanza>,
    pub(super) splice: Option<Splice>,
}

/// Why an outgoing iq got no result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IqError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the peer answered with an error: {0:?}")]
    Error(Box<StanzaError>),
    #[error("the XMPP session has stopped")]
    Stopped,
    #[error("the request cannot be sent: {0}")]
    Unsendable(SendError),
}

struct PendingIq {
    /// Who must answer: `None` means our own server or account.
    to: Option<Jid>,
    reply: oneshot::Sender<Iq>,
}

struct HandleInner {
    jid: FullJid,
    out: mpsc::Sender<Outgoing>,
    splices: Splices,
    limit: StanzaLimit,
    state: watch::Sender<SessionState>,
    pending: Mutex<HashMap<String, PendingIq>>,
}

/// The agent's way to talk on its XMPP session. Cheap to clone.
#[derive(Clone)]
pub struct XmppHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for XmppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppHandle")
            .field("jid", &self.inner.jid)
            .field("state", &self.state())
            .finish()
    }
}

/// Removes a pending iq when its waiter gives up (timeout or drop).
struct PendingGuard<'a> {
    handle: &'a XmppHandle,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.handle.pending().remove(&self.id);
    }
}

impl XmppHandle {
    pub(super) fn new(
        jid: FullJid,
        out: mpsc::Sender<Outgoing>,
        splices: Splices,
        limit: StanzaLimit,
    ) -> Self {
        XmppHandle {
            inner: Arc::new(HandleInner {
                jid,
                out,
                splices,
                limit,
                state: watch::Sender::new(SessionState::Connecting),
                pending: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The agent's full JID (as configured; peers address commands to it).
    pub fn jid(&self) -> &FullJid {
        &self.inner.jid
    }

    pub fn state(&self) -> SessionState {
        *self.inner.state.borrow()
    }

    /// Whether the session is bound and serving (for `/healthz`).
    pub fn is_up(&self) -> bool {
        self.state() == SessionState::Up
    }

    /// A receiver of state changes.
    pub fn watch_state(&self) -> watch::Receiver<SessionState> {
        self.inner.state.subscribe()
    }

    /// Waits until the session is up; false if `timeout` passes first or the
    /// session stops.
    pub async fn wait_until_up(&self, timeout: Duration) -> bool {
        let mut rx = self.watch_state();
        let wait = rx.wait_for(|s| matches!(s, SessionState::Up | SessionState::Stopped));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(state)) => *state == SessionState::Up,
            _ => false,
        }
    }

    /// The largest stanza the session may send now, envelope included:
    /// `xmpp.max_stanza_bytes`, or less when the server advertises less.
    pub fn max_stanza_bytes(&self) -> usize {
        self.inner.limit.get()
    }

    /// Prepares a payload already serialised (one XML element) to be sent in a
    /// stanza: put [`Splice::placeholder`] where it belongs, then
    /// [`XmppHandle::send_spliced`].
    pub fn prepare(&self, payload: bytes::Bytes) -> Splice {
        self.inner.splices.prepare(payload)
    }

    /// The exact size of `stanza` on the wire, with `splice`'s payload in place
    /// of its placeholder.
    pub fn measure(&self, stanza: &Stanza, splice: Option<&Splice>) -> Result<usize, SendError> {
        let envelope = stanza_size(stanza).map_err(|e| SendError::Unserialisable(e.to_string()))?;
        Ok(match splice {
            Some(splice) => (envelope as isize + splice.growth()).max(0) as usize,
            None => envelope,
        })
    }

    /// The size of the stanza `build` makes around a payload's placeholder,
    /// without the payload: a payload may add [`XmppHandle::max_stanza_bytes`]
    /// less this.
    pub fn envelope_bytes(
        &self,
        build: impl FnOnce(minidom::Element) -> Stanza,
    ) -> Result<usize, SendError> {
        let probe = self.prepare(bytes::Bytes::new());
        let stanza = build(probe.placeholder());
        self.measure(&stanza, Some(&probe))
    }

    /// Queues a stanza (a message to a peer, say). While the connection is down
    /// it waits in the queue and goes out after the reconnection. A stanza
    /// larger than the server accepts is refused, not sent.
    pub async fn send(&self, stanza: impl Into<Stanza>) -> Result<(), SendError> {
        self.queue(stanza.into(), None).await
    }

    /// Queues `stanza` with `splice`'s payload in place of its placeholder; the
    /// whole is sized before it is queued and refused when too large.
    pub async fn send_spliced(
        &self,
        stanza: impl Into<Stanza>,
        splice: Splice,
    ) -> Result<(), SendError> {
        self.queue(stanza.into(), Some(splice)).await
    }

    async fn queue(&self, stanza: Stanza, splice: Option<Splice>) -> Result<(), SendError> {
        let size = self.measure(&stanza, splice.as_ref())?;
        let limit = self.max_stanza_bytes();
        if size > limit {
            tracing::warn!(
                size,
                limit,
                "XMPP: not sending a stanza larger than the server accepts"
            );
            return Err(SendError::TooLarge { size, limit });
        }
        self.inner
            .out
            .send(Outgoing {
                stanza: Box::new(stanza),
                splice,
            })
            .await
            .map_err(|_| SendError::Stopped)
    }

    /// Sends a message.
    pub async fn send_message(&self, message: Message) -> Result<(), SendError> {
        self.send(message).await
    }

    /// Sends an iq request to `to` (`None`: our server) and waits for its
    /// answer, at most `timeout`. Returns the result's payload.
    pub async fn send_iq(
        &self,
        to: Option<Jid>,
        payload: IqRequestPayload,
        timeout: Duration,
    ) -> Result<Option<tokio_xmpp::minidom::Element>, IqError> {
        let id = new_id();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(
            id.clone(),
            PendingIq {
                to: to.clone(),
                reply: tx,
            },
        );
        let _guard = PendingGuard {
            handle: self,
            id: id.clone(),
        };
        let iq = match payload {
            IqRequestPayload::Get(payload) => Iq::Get {
                from: None,
                to,
                id,
                payload,
            },
            IqRequestPayload::Set(payload) => Iq::Set {
                from: None,
                to,
                id,
                payload,
            },
        };
        let exchange = async {
            self.send(iq).await.map_err(|e| match e {
                SendError::Stopped => IqError::Stopped,
                other => IqError::Unsendable(other),
            })?;
            match rx.await {
                Ok(Iq::Result { payload, .. }) => Ok(payload),
                Ok(Iq::Error { error, .. }) => Err(IqError::Error(Box::new(error))),
                Ok(_) | Err(_) => Err(IqError::Stopped),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| IqError::Timeout(timeout))?
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingIq>> {
        // Held for a map operation only, never across an await.
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands an answer to its waiter; false if no one waits for it (or it comes
    /// from someone other than the one asked: ids are not secrets to trust alone).
    pub(super) fn resolve(&self, iq: Iq) -> bool {
        let mut pending = self.pending();
        let Some(entry) = pending.get(iq.id()) else {
            return false;
        };
        let own_bare = self.inner.jid.to_bare();
        let from_ok = match (&entry.to, iq.from()) {
            (Some(to), Some(from)) => to == from,
            (Some(_), None) => false,
            (None, None) => true,
            (None, Some(from)) => {
                from.to_bare() == own_bare
                    || (from.node().is_none() && from.domain() == self.inner.jid.domain())
            }
        };
        if !from_ok {
            return false;
        }
        if let Some(entry) = pending.remove(iq.id()) {
            let _ = entry.reply.send(iq);
        }
        true
    }

    /// The splices of payloads in flight, for the driver to register a
    /// payload as its stanza goes out.
    pub(super) fn splices(&self) -> &Splices {
        &self.inner.splices
    }

    /// Drops every pending iq, which wakes its waiter (no answer will come).
    pub(super) fn abandon_pending(&self) {
        self.pending().clear();
    }

    pub(super) fn set_state(&self, state: SessionState) {
        self.inner.state.send_replace(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_long() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_id());
    }
}
