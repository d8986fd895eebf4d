//! The whole simulator as one axum router: every Enedis path of every generation,
//! the admin API, behind the gateway layer (tokens, quotas, faults); and `serve`,
//! which runs it on a listener until a shutdown future completes.

use std::future::{Future, IntoFuture};
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::{any, get, post};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

use crate::options::Options;
use crate::{admin, api2026, errors, gateway, itc, oauth, sge, state, subscribed, v1data, v5};

/// The whole simulator as an axum router (SGE aside: it is only on the mutual-TLS
/// listener, see [`serve_with_sge`]).
pub fn router(options: Options) -> Router {
    routers(options).0
}

/// The simulator's two routers over one state: everything but SGE (plain HTTP,
/// admin included), and the SGE SOAP services (mutual TLS). Both go through the
/// gateway layer, so the admin API counts SGE calls too.
fn routers(options: Options) -> (Router, Router) {
    let sim = state::Sim::new(options);
    let main = Router::new()
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
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            gateway::gateway,
        ))
        .with_state(sim.clone());
    let sge = sge::routes()
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            gateway::gateway,
        ))
        .with_state(sim);
    (main, sge)
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
    serve_with_sge(listener, None, options, shutdown).await
}

/// The SGE listener: bound, with its rustls configuration (`sge::tls`).
pub struct SgeListener {
    pub listener: tokio::net::TcpListener,
    pub tls: Arc<ServerConfig>,
}

/// Serve the simulator on `listener` and, when given, the SGE services on the
/// mutual-TLS `sge` listener, until `shutdown` completes (both stop then).
pub async fn serve_with_sge(
    listener: tokio::net::TcpListener,
    sge: Option<SgeListener>,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (main, sge_router) = routers(options);
    let (stop, stopping) = watch::channel(false);
    let forward = async move {
        shutdown.await;
        let _ = stop.send(true);
        Ok::<(), std::io::Error>(())
    };
    let plain = axum::serve(listener, main)
        .with_graceful_shutdown(stopped(stopping.clone()))
        .into_future();
    match sge {
        None => tokio::try_join!(plain, forward).map(|_| ()),
        Some(sge) => {
            let tls = axum::serve(
                sge::tls::MutualTlsListener::new(sge.listener, sge.tls)?,
                sge_router,
            )
            .with_graceful_shutdown(stopped(stopping))
            .into_future();
            tokio::try_join!(plain, tls, forward).map(|_| ())
        }
    }
}

async fn stopped(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}
