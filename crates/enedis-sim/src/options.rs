//! How a simulator is started: the application it knows (`client_id`, a secret
//! that never prints), the fixed "today", quotas and token lifetimes. Filled by the
//! command line (`cli`) or by a test, read by the state.

use jiff::civil::Date;
use url::Url;

/// A secret (the application's `client_secret`) that never shows in a log or a
/// `Debug` print.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is compared with what a client sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The application credentials the simulator accepts unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "sim-client";
pub const DEFAULT_CLIENT_SECRET: &str = "sim-secret";
/// Enedis' access-token lifetime (3.5 h).
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 12_600;

/// How the simulator is started (the command line of `enedis-sim`).
#[derive(Debug, Clone)]
pub struct Options {
    /// The one application registered at this "Enedis".
    pub client_id: String,
    pub client_secret: Secret,
    /// The application's registered redirect URI (v2 consent needs it; v1 may send
    /// its own `redirect_uri`, which must then equal this one when set).
    pub redirect_uri: Option<Url>,
    /// Fixed "today" (Paris), for deterministic tests; `None` follows the clock.
    pub today: Option<Date>,
    /// Calls per second per API (0: unlimited).
    pub quota_per_second: u32,
    /// Calls per hour for every quota bucket; `None` keeps Enedis' figures
    /// (1000 per 2026 API, 10000 for v5, 10000 for v3/v4).
    pub quota_per_hour: Option<u32>,
    /// Access-token lifetime in seconds.
    pub token_ttl_secs: u64,
    /// Answer `expires_in` as a string on `/oauth2/v3/token` (as the v5 openapi).
    pub expires_in_as_string: bool,
    /// SGE calls per second over all SGE paths, as the homologation platform
    /// allows (1); 0: unlimited.
    pub sge_pace: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: Secret::new(DEFAULT_CLIENT_SECRET),
            redirect_uri: None,
            today: None,
            quota_per_second: 5,
            quota_per_hour: None,
            token_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            expires_in_as_string: false,
            sge_pace: 0,
        }
    }
}
