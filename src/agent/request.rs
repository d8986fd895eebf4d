//! One request for readings, whatever command or push it came from: what is
//! asked ([`DataRequest`]) and, for a peer that takes its answer in one stanza,
//! the room that stanza leaves ([`OneStanza`]). The data path, the sizing, the
//! audit trail and the answer all read it; it imports none of them.

use xmpp_parsers::jid::BareJid;

use crate::quoalise::{Identifier, MetaForm};
use crate::time::Window;
use crate::upstream::Class;

/// One request for readings, whatever command it came from.
#[derive(Debug, Clone)]
pub struct DataRequest {
    /// The requester's bare JID (authorisation and consents are per bare JID).
    pub requester: BareJid,
    pub identifier: Identifier,
    /// The period, `[start, end[`.
    pub window: Window,
    /// Flat for `get_history`, nested for the legacy commands.
    pub meta: MetaForm,
    /// The form fields the period came from, for error texts
    /// (e.g. `start_time/end_time`).
    pub period_fields: &'static str,
    /// When the answer is due.
    pub deadline: tokio::time::Instant,
    /// Interactive (a peer waits: commands) or background (pushes); the quota
    /// scheduler serves the first before the second.
    pub class: Class,
    /// For a peer that receives the answer in ONE stanza: the payload bytes
    /// that stanza has room for. A range whose answer is predictably larger
    /// (the meter's step known from the cache) is refused before Enedis is
    /// called ([`super::size::too_large_before`]).
    pub max_payload: Option<OneStanza>,
}

/// The room of a one-stanza answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneStanza {
    /// Bytes left for the payload.
    pub room: usize,
    /// The largest stanza.
    pub limit: usize,
}
