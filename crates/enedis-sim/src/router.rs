//! The whole simulator as one axum router: every Enedis path of every generation,
//! the admin API, behind the gateway layer (tokens, quotas, faults); and `serve`,
//! which runs it on a listener until a shutdown future completes.

use std::future::Future;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{any, get, post};

use crate::options::Options;
use crate::{admin, api2026, errors, gateway, itc, oauth, sge, state, subscribed, v1data, v5};

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
        .route("/mesure_synchrone_auto/v2/{resource}", any(api2026::mesure))
        .route("/subscribed_services/v1/", any(subscribed::search))
        .route("/subscribed_services/v1", any(subscribed::search))
        .merge(itc::routes())
        .merge(v5::routes())
        .merge(admin::routes())
        .merge(sge::routes())
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
