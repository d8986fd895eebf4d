//! [`AgentContext`]: everything a command, a web handler or a background task of
//! the running agent shares, built once by `run` and passed explicitly (no
//! globals). Commands receive it as `&AgentContext` (it is the `C` of
//! `CommandSet<AgentContext>`); web handlers get it as axum state
//! (`Arc<AgentContext>`).
//!
//! What can change at run time (a SIGHUP reload replaces the peers, their
//! grants and their scopes) lives in one [`Settings`] snapshot behind a lock: a request reads the
//! snapshot once ([`AgentContext::settings`]) and works with a consistent view
//! even if a reload happens meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use xmpp_parsers::jid::BareJid;

use crate::config::{ApiGeneration, Config, PeerConfig};
use crate::metrics::Metrics;
use crate::quoalise::{Prm, Scopes};
use crate::store::Store;
use crate::upstream::Upstream;
use crate::upstream::sge::SgeClient;
use crate::xmpp::{AllowList, InvalidPeerJid, XmppHandle};

/// The configuration in force, with the peers' grants indexed for lookups.
#[derive(Debug)]
pub struct Settings {
    /// The whole configuration in force. After a reload, only `peers` differs
    /// from the one the agent started with: the other sections need a restart
    /// and keep their start-up values here, so this is always what runs.
    pub config: Config,
    /// Normalised bare JID → the PRMs its `usage_points` grant.
    usage_points: HashMap<String, BTreeSet<Prm>>,
    /// Normalised bare JID → its `scopes`, read on every request.
    scopes: HashMap<String, Scopes>,
}

impl Settings {
    pub fn new(config: Config) -> Settings {
        // `PeerConfig::jid` is already normalised (RFC 7622) by `Config::load`.
        let usage_points = config
            .peers
            .iter()
            .map(|p| (p.jid.clone(), p.usage_points.iter().copied().collect()))
            .collect();
        let scopes = config
            .peers
            .iter()
            .map(|p| (p.jid.clone(), p.scopes))
            .collect();
        Settings {
            config,
            usage_points,
            scopes,
        }
    }

    /// The `[[peers]]` entry of `peer`, if it is one.
    pub fn peer(&self, peer: &BareJid) -> Option<&PeerConfig> {
        self.config.peers.iter().find(|p| p.jid == peer.as_str())
    }

    /// The PRMs the configuration grants `peer` (its `usage_points`).
    pub fn usage_points(&self, peer: &BareJid) -> Option<&BTreeSet<Prm>> {
        self.usage_points.get(peer.as_str())
    }

    /// Whether the configuration grants `peer` the PRM `prm`.
    pub fn grants(&self, peer: &BareJid, prm: &Prm) -> bool {
        self.usage_points(peer).is_some_and(|set| set.contains(prm))
    }

    /// The kinds of data `peer` may receive (its `[[peers]] scopes`); none for a
    /// JID that is not a peer.
    pub fn scopes(&self, peer: &BareJid) -> Scopes {
        self.scopes
            .get(peer.as_str())
            .copied()
            .unwrap_or(Scopes::NONE)
    }

    /// The Enedis API generation in use (consents of other generations do not
    /// count). Without `[enedis]` the default stands in: no consent is given
    /// through it, and any left from an earlier configuration is refused by
    /// [`crate::upstream::WithoutDataConnect`] with the reason.
    pub fn generation(&self) -> ApiGeneration {
        self.config
            .enedis
            .as_ref()
            .map_or(ApiGeneration::default(), |e| e.api)
    }

    /// Whether the agent reads Enedis Data Connect (its configuration has
    /// `[enedis]`): without it, no consent flow (`get_authorize_uri`).
    pub fn has_data_connect(&self) -> bool {
        self.config.has_data_connect()
    }

    /// Whether the API generation in use serves the index series (2026 only).
    pub fn serves_indexes(&self) -> bool {
        crate::upstream::serves(
            self.generation(),
            crate::quoalise::Series::EnergyIndex(crate::quoalise::Direction::Consumption),
        )
    }
}

/// The running agent's shared state. Cheap to share behind an `Arc`; every field
/// is itself a handle (store, upstream client, metrics, XMPP session, allow-list).
pub struct AgentContext {
    /// The consent store (SQLite).
    pub store: Store,
    /// The Enedis client of the configured generation.
    pub upstream: Arc<dyn Upstream>,
    /// The Enedis SGE client, when `[sge]` is configured: it reads the PRMs
    /// that have a declared consent ([`crate::store::Store::upstream_for_prm`]).
    pub sge: Option<Arc<SgeClient>>,
    /// The metrics `/metrics` renders.
    pub metrics: Metrics,
    /// The agent's XMPP session: send messages (consent notifications, pushed
    /// data), know whether it is up.
    pub xmpp: XmppHandle,
    /// The allow-list the XMPP router checks before anything else; the same list
    /// (clones share it), replaced on reload.
    pub peers: AllowList,
    /// Wakes the subscription scheduler for a delivery pass now (a new
    /// subscription gets its first data at once).
    pub pushes: Arc<tokio::sync::Notify>,
    settings: RwLock<Arc<Settings>>,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentContext")
            .field("store", &self.store)
            .field("xmpp", &self.xmpp)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl AgentContext {
    /// The context of an agent running `config`.
    pub fn new(
        config: Config,
        store: Store,
        upstream: Arc<dyn Upstream>,
        metrics: Metrics,
        xmpp: XmppHandle,
    ) -> Result<AgentContext, InvalidPeerJid> {
        let peers = AllowList::from_peers(&config.peers)?;
        Ok(AgentContext {
            store,
            upstream,
            sge: None,
            metrics,
            xmpp,
            peers,
            pushes: Arc::new(tokio::sync::Notify::new()),
            settings: RwLock::new(Arc::new(Settings::new(config))),
        })
    }

    /// The context with an SGE client beside Data Connect.
    pub fn with_sge(mut self, sge: Arc<SgeClient>) -> AgentContext {
        self.sge = Some(sge);
        self
    }

    /// The settings in force now. Read them once per request: a reload swaps the
    /// whole snapshot, never part of it.
    pub fn settings(&self) -> Arc<Settings> {
        // A std RwLock: held only to clone an Arc, never across an await.
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `peers` in force (allow-list and grants) and returns the new settings.
    /// On an invalid JID nothing changes.
    pub(crate) fn replace_peers(
        &self,
        peers: Vec<PeerConfig>,
    ) -> Result<Arc<Settings>, InvalidPeerJid> {
        let mut config = self.settings().config.clone();
        self.peers.replace(peers.iter().map(|p| p.jid.as_str()))?;
        config.peers = peers;
        let settings = Arc::new(Settings::new(config));
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings.clone();
        Ok(settings)
    }
}
