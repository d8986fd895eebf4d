//! The Enedis upstream: one interface ([`Upstream`]) over four API generations.
//!
//! | `enedis.api` | consent | token | data |
//! |---|---|---|---|
//! | `2026` | v2 page → `autorisation_id` → `subscribed_services` | application | [`api2026`] |
//! | `v5` | v1 page → `usage_point_id` | application | [`v1::V5`] |
//! | `v4` | v1 page → `code` + `usage_point_id` | per consent | [`v1::V4`] |
//! | `v3` | same as v4 | per consent | [`v1::V3`] (`rank`) |
//!
//! Each API family module only knows its paths and its answer format (a
//! [`Dialect`]): [`api2026`], and [`v1`] for v3, v4 and v5, one description per
//! generation. Everything else is shared by [`EnedisClient`] ([`client`]): the HTTP
//! client with its timeouts and retries ([`http`]), the application-wide quota
//! ([`limiter`]), tokens ([`token`]), the day windows and their splitting
//! ([`window`]), and the consent flow, from the authorize URL to the stored consent
//! ([`consent`]). Answers are read with the helpers of [`normalise`]; failures are
//! [`error`]s.
//!
//! Contract and technical data (`get_contract`) come from other APIs of the same
//! generations, read by [`contract`] with the same machinery.
//!
//! In front of the client, [`cache`] keeps closed days (in the store's
//! [`crate::store::readings`]) and coalesces identical requests; it is an
//! [`Upstream`] too, and the one the agent holds.
//!
//! Readings come out normalised: UTC seconds at the START of the interval they cover
//! (an index: the instant the counter was read), with their step, ordered, without
//! duplicates, missing values as `None`. The energy per calendar class is not read
//! from Enedis but derived from the class's indexes ([`derive`]), by the client and
//! by the cache alike.

pub mod api2026;
pub mod cache;
pub mod client;
pub mod consent;
pub mod contract;
pub mod derive;
pub mod error;
pub mod http;
pub mod limiter;
pub mod normalise;
pub mod quota_ledger;
pub mod sge;
pub mod token;
pub mod v1;
pub mod window;

pub use client::{EnedisClient, connect};
pub use consent::{Callback, ConsentDuration, authorize_url, parse_prm_list};
pub use contract::FetchedContract;
pub use error::{EnedisFault, ErrorKind, UpstreamError};
pub use limiter::{Ask, Class, Granted, Journal, Limit, QuotaLimiter};
pub use window::{Limits, Plan};

use async_trait::async_trait;
use jiff::civil::Date;
use url::Url;

use self::normalise::ShapeError;
use crate::config::ApiGeneration;
use crate::quoalise::{Prm, Reading, Series};
use crate::store::Consent;

/// The readings of one request, and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    /// Normalised readings, ordered by start, without duplicates.
    pub readings: Vec<Reading>,
    /// HTTP requests sent to Enedis for this request (data, token renewals, retries).
    pub calls: u32,
    /// The Paris days actually served, `[from, to[` (after clamping).
    pub from: Date,
    pub to: Date,
    /// What was clamped and why.
    pub notes: Vec<String>,
    /// The other series the same upstream calls answered, over the same days: an
    /// index answer holds the totalisator and every calendar class at once
    /// ([`source`]), and the cache keeps them all. Empty for the other series.
    pub siblings: Vec<(Series, Vec<Reading>)>,
}

/// The series whose upstream call answers `series`: for every index series
/// (the totalisator or a class) the direction's [`Series::EnergyIndex`], whose
/// answer holds them all; `series` itself otherwise. A derived series has no call
/// of its own (see [`derive`]).
pub fn source(series: Series) -> Series {
    match series {
        Series::ClassIndex(direction, _) => Series::EnergyIndex(direction),
        other => other,
    }
}

/// What the agent asks of Enedis, whatever the generation. Object safe: the agent
/// holds an `Arc<dyn Upstream>`.
#[async_trait]
pub trait Upstream: Send + Sync {
    /// The generation spoken.
    fn generation(&self) -> ApiGeneration;

    /// Readings of `series` for `prm` over the Paris days `[from, to[`.
    ///
    /// The caller has checked that the requesting peer may read `prm`; for v3/v4 the
    /// tokens of any usable consent covering `prm` are used. `ask` says who the
    /// calls are for and how urgent they are (the quota scheduler's queue).
    async fn readings(
        &self,
        prm: Prm,
        series: Series,
        from: Date,
        to: Date,
        ask: &Ask,
    ) -> Result<Fetched, UpstreamError>;

    /// The contract and technical data of `prm` ([`contract`]): from the 2026
    /// ITC APIs or the v5 customer APIs; [`UpstreamError::NotImplemented`] for v3
    /// and v4, which have none. As for [`Upstream::readings`], the caller has
    /// checked that the peer may read `prm`.
    async fn contract(&self, prm: Prm, ask: &Ask) -> Result<FetchedContract, UpstreamError>;

    /// The consent page to send a consumer to.
    fn authorize_url(&self, state: &str, duration: &ConsentDuration) -> Result<Url, UpstreamError>;

    /// Turn Enedis's redirect into a stored consent owned by `owner` (a normalised bare
    /// JID). `duration` is what was asked on the authorize URL (the validity of v3–v5
    /// consents; 2026 takes it from the consent's services).
    async fn resolve_consent(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError>;
}

/// One data call of a generation: where, and with which query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCall {
    pub endpoint: String,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
}

impl DataCall {
    /// A GET of `path` (absolute) with `query`; the endpoint, as logged and counted,
    /// is the path without its leading `/`.
    pub fn new(path: String, query: Vec<(&'static str, String)>) -> DataCall {
        DataCall {
            endpoint: path.trim_start_matches('/').to_owned(),
            path,
            query,
        }
    }
}

/// What differs between generations on the data side.
pub trait Dialect: Send + Sync {
    fn generation(&self) -> ApiGeneration;
    /// Whether the generation serves `series` (the v1 family has no index; no
    /// generation has SGE's corrected and reactive curves); the
    /// client refuses the others before calling. Never asked for a derived series.
    fn serves(&self, series: Series) -> bool {
        !series.is_sge_only()
    }
    /// The call for `series` of `prm` over `[from, to[` (at most one call's worth).
    fn data_call(&self, series: Series, prm: &Prm, from: Date, to: Date) -> DataCall;
    /// Read a 2xx answer of that call into normalised readings within `[from, to[`.
    fn parse(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<Reading>, ShapeError>;
    /// [`Dialect::parse`], with every other series the answer holds (an index
    /// answer: the totalisator and each class), `series` first.
    fn parse_all(
        &self,
        series: Series,
        prm: &Prm,
        from: Date,
        to: Date,
        body: &[u8],
    ) -> Result<Vec<(Series, Vec<Reading>)>, ShapeError> {
        Ok(vec![(series, self.parse(series, prm, from, to, body)?)])
    }
}

/// Whether `generation` serves `series` (a derived series: the index it is derived
/// from); the client and the cache refuse the others with
/// [`UpstreamError::Unsupported`].
pub fn serves(generation: ApiGeneration, series: Series) -> bool {
    dialect(generation).serves(derive::index_of(series).unwrap_or(series))
}

/// The dialect of a generation.
pub fn dialect(generation: ApiGeneration) -> Box<dyn Dialect> {
    match generation {
        ApiGeneration::Api2026 => Box::new(api2026::Api2026),
        ApiGeneration::V5 => Box::new(v1::V5),
        ApiGeneration::V4 => Box::new(v1::V4),
        ApiGeneration::V3 => Box::new(v1::V3),
    }
}

/// The [`Upstream`] of an agent without `[enedis]` (SGE only): it builds no Data
/// Connect client, cache or token, and refuses everything with
/// [`UpstreamError::NotImplemented`] (`feature-not-implemented` to a peer: the
/// agent does not have the feature, and asking again will not change that). The
/// PRMs with a declared consent never come here: they are read through SGE.
#[derive(Debug, Clone, Copy, Default)]
pub struct WithoutDataConnect;

impl WithoutDataConnect {
    /// The refusal of anything about `prm`: it would be read through Data Connect
    /// (no consent declared to SGE covers it), which this agent does not read.
    pub fn refusal(prm: Prm) -> UpstreamError {
        UpstreamError::NotImplemented(format!(
            "PRM {prm} has no consent declared to Enedis SGE, so it would be read through \
             Enedis Data Connect, but {}; the agent's operator can declare an SGE consent \
             for it",
            crate::config::NoDataConnect
        ))
    }
}

#[async_trait]
impl Upstream for WithoutDataConnect {
    /// None is spoken; the default generation stands in where one is asked
    /// (consents of the store, cached days), and no consent is ever given here.
    fn generation(&self) -> ApiGeneration {
        ApiGeneration::default()
    }

    async fn readings(
        &self,
        prm: Prm,
        _series: Series,
        _from: Date,
        _to: Date,
        _ask: &Ask,
    ) -> Result<Fetched, UpstreamError> {
        Err(Self::refusal(prm))
    }

    async fn contract(&self, prm: Prm, _ask: &Ask) -> Result<FetchedContract, UpstreamError> {
        Err(Self::refusal(prm))
    }

    fn authorize_url(
        &self,
        _state: &str,
        _duration: &ConsentDuration,
    ) -> Result<Url, UpstreamError> {
        Err(UpstreamError::NotImplemented(
            crate::config::NoDataConnect.to_string(),
        ))
    }

    async fn resolve_consent(
        &self,
        _owner: &str,
        _callback: &Callback,
        _duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        Err(UpstreamError::NotImplemented(
            crate::config::NoDataConnect.to_string(),
        ))
    }
}
