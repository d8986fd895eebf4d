//! Who may talk to the agent: the allow-list of peer bare JIDs, swappable at run
//! time (a SIGHUP reload replaces it without touching running requests).

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use xmpp_parsers::jid::{BareJid, Jid};

use crate::config::PeerConfig;

/// A JID in the allow-list that does not parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("peer JID '{jid}' is invalid: {reason}")]
pub struct InvalidPeerJid {
    pub jid: String,
    pub reason: String,
}

/// Normalises a JID to its bare form for comparison, with the configuration's
/// normaliser ([`crate::config::bare_jid`]): localpart and domain case-folded, a
/// final root dot removed, the resource dropped.
pub(crate) fn normalize_bare_jid(jid: &str) -> Result<BareJid, InvalidPeerJid> {
    crate::config::bare_jid(jid.trim()).map_err(|e| InvalidPeerJid {
        jid: jid.to_owned(),
        reason: e.to_string(),
    })
}

/// The set of bare JIDs served by the agent. Cheap to clone: all clones see
/// [`AllowList::replace`].
#[derive(Clone, Default)]
pub struct AllowList {
    // A std RwLock is enough: reads are a pointer clone, writes happen on reload only.
    inner: Arc<RwLock<Arc<BTreeSet<BareJid>>>>,
}

impl std::fmt::Debug for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.snapshot().iter()).finish()
    }
}

impl AllowList {
    /// An allow-list of the given JIDs (normalised; resources ignored).
    pub fn new<I, S>(jids: I) -> Result<Self, InvalidPeerJid>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let list = AllowList::default();
        list.replace(jids)?;
        Ok(list)
    }

    /// The allow-list of the configured `[[peers]]`.
    pub fn from_peers(peers: &[PeerConfig]) -> Result<Self, InvalidPeerJid> {
        AllowList::new(peers.iter().map(|p| p.jid.as_str()))
    }

    /// Replaces the whole list; on error the old list stays in force.
    pub fn replace<I, S>(&self, jids: I) -> Result<(), InvalidPeerJid>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let set = jids
            .into_iter()
            .map(|j| normalize_bare_jid(j.as_ref()))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(set);
        Ok(())
    }

    /// Whether `jid` (any form: bare or full, any letter case) is allowed.
    pub fn allows(&self, jid: &Jid) -> bool {
        // Re-normalise: a JID built without stringprep must not slip through.
        match normalize_bare_jid(jid.as_str()) {
            Ok(bare) => self.snapshot().contains(&bare),
            Err(_) => false,
        }
    }

    /// The current list.
    pub fn snapshot(&self) -> Arc<BTreeSet<BareJid>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn compares_normalised_bare_jids() {
        let list = AllowList::new(["App@Example.ORG"]).unwrap();
        assert!(list.allows(&jid("app@example.org")));
        assert!(list.allows(&jid("APP@EXAMPLE.org/laptop")));
        assert!(!list.allows(&jid("other@example.org")));
        assert!(!list.allows(&jid("example.org")));
        // A domain's root dot is the same domain, on either side.
        assert!(list.allows(&jid("app@example.org./laptop")));
        let dotted = AllowList::new(["app@example.org."]).unwrap();
        assert!(dotted.allows(&jid("App@Example.ORG")));
    }

    #[test]
    fn replace_is_seen_by_all_clones_and_keeps_the_old_list_on_error() {
        let list = AllowList::new(["a@example.org"]).unwrap();
        let clone = list.clone();
        list.replace(["b@example.org"]).unwrap();
        assert!(!clone.allows(&jid("a@example.org")));
        assert!(clone.allows(&jid("b@example.org")));

        let err = list.replace(["c@example.org", "bad@@jid"]).unwrap_err();
        assert!(err.to_string().contains("bad@@jid"), "{err}");
        assert!(clone.allows(&jid("b@example.org")));
    }
}
