//! enedis-sim: a local Enedis Data Connect, all four API generations at once.
//!
//! No machine here reaches Enedis, so the agent, its tests, its demo and its users'
//! integration tests meet "Enedis" through this simulator. It serves, each on its
//! own paths: the v1 (v3/v4/v5) and v2 (2026) consent pages, the per-consent v1
//! token endpoint and the application `client_credentials` token endpoint, the v3
//! (seed, `rank`), v4, v5 and 2026 metering APIs, the 2026 `subscribed_services`
//! and contract (ITC) APIs, and the v5 customer APIs. Values are synthetic and
//! deterministic ([`synth`]); the sandbox profiles and special meters are in
//! [`catalogue`]. A WSO2-like gateway layer checks tokens, enforces quotas and
//! injects faults; `/sim/admin/` switches faults and quotas at run time and counts
//! calls. `docs/enedis-sim.md` documents the behaviour for users.
//!
//! This crate stands alone: it shares no code with quoalise-agent, so the agent's
//! tests meet an independent implementation of Enedis. The `harness` feature adds
//! [`harness`], which the tests of both crates use to run a simulator in-process.
#![forbid(unsafe_code)]

pub mod catalogue;
pub mod cli;
#[cfg(feature = "harness")]
pub mod harness;
pub mod model;
pub mod paris;
pub mod synth;

mod admin;
mod api2026;
mod errors;
mod gateway;
mod itc;
mod metering;
mod oauth;
mod page;
mod state;
mod subscribed;
mod v1data;
mod v5;

use std::future::Future;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{any, get, post};
use jiff::civil::Date;
use url::Url;

pub use state::{Faults, ForcedStatus, QuotaLimits};

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
        }
    }
}

/// The whole simulator as an axum router.
pub fn router(options: Options) -> Router {
    let sim = state::Sim::new(options);
    Router::new()
        .route(
            "/dataconnect/v1/oauth2/authorize",
            get(oauth::authorize_v1).post(oauth::decide_v1),
        )
        .route(
            "/dataconnect/v2/oauth2/authorize",
            get(oauth::authorize_v2).post(oauth::decide_v2),
        )
        .route("/v1/oauth2/token", post(oauth::token_v1))
        .route("/oauth2/v3/token", post(oauth::token_v3))
        .route("/v3/metering_data/{name}", get(v1data::v3))
        .route("/v4/metering_data/{name}", get(v1data::v4))
        .route(
            "/metering_data_clc/v5/consumption_load_curve",
            get(v5::consumption_load_curve),
        )
        .route(
            "/metering_data_plc/v5/production_load_curve",
            get(v5::production_load_curve),
        )
        .route(
            "/metering_data_dc/v5/daily_consumption",
            get(v5::daily_consumption),
        )
        .route(
            "/metering_data_dp/v5/daily_production",
            get(v5::daily_production),
        )
        .route(
            "/metering_data_dcmp/v5/daily_consumption_max_power",
            get(v5::daily_consumption_max_power),
        )
        .route("/customers_i/v5/identity", get(itc::v5_identity))
        .route("/customers_cd/v5/contact_data", get(itc::v5_contact_data))
        .route(
            "/customers_upc/v5/usage_points/contracts",
            get(itc::v5_contracts),
        )
        .route(
            "/customers_upa/v5/usage_points/addresses",
            get(itc::v5_addresses),
        )
        .route("/mesure_synchrone_auto/v2/{resource}", any(api2026::mesure))
        .route("/subscribed_services/v1/", any(subscribed::search))
        .route("/subscribed_services/v1", any(subscribed::search))
        .route(
            "/situation_contrat_auto/v1/{prm}",
            any(itc::situation_contrat),
        )
        .route("/synth_contrat_auto/v1/{prm}", any(itc::synth_contrat))
        .route(
            "/donnees_generales_auto/v1/{prm}",
            any(itc::donnees_generales),
        )
        .route("/comptage_auto/v1/{prm}", any(itc::comptage))
        .merge(admin::routes())
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            gateway::gateway,
        ))
        .with_state(sim)
}

/// Paths no route serves: a 500 under a 2026 API (Enedis answers anything outside
/// its swagger so), the gateway's 404 elsewhere.
async fn fallback(request: Request) -> Response {
    let path = request.uri().path();
    if gateway::classify(path).generation() == Some(errors::Gen::Api2026) {
        errors::Refusal::OutsideSwagger(format!("no such resource: {path}"))
            .response(errors::Gen::Api2026)
    } else {
        errors::gateway_not_found()
    }
}

/// Serve the simulator on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(options))
        .with_graceful_shutdown(shutdown)
        .await
}
