//! `/sim/admin/`: run-time control of the simulator, for tests and demos. No auth
//! (it is a local test tool); nothing here is counted or faulted.
//!
//! - `GET/DELETE calls`: call counters per endpoint (`"GET /path"`) and status.
//! - `GET requests`: the last 2000 requests (secrets masked).
//! - `GET/POST/DELETE faults`: fault switches (a POST replaces them all).
//! - `GET/POST quota`: limits and usage.
//! - `GET/POST config`: redirect URI, today, token lifetime, `expires_in` type.
//! - `POST reset`: everything back to the state right after start.
//! - `GET consents`, `POST consents/{id}/revoke`, `POST prms/{prm}/revoke`.
//! - `GET sge/services`: the SGE access services ordered (`CommanderServicesAccesDonnees`).
//! - `GET tokens`, `POST tokens/expire`.
//! - `GET meters`: profiles and known meters.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::model::Prm;
use crate::paris::parse_date;

use super::catalogue::{PROFILES, known_meters};
use super::state::{CallCounter, Faults, Holder, QuotaLimits, Sim};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/sim/admin/calls", get(calls).delete(clear_calls))
        .route("/sim/admin/requests", get(requests))
        .route(
            "/sim/admin/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/sim/admin/quota", get(get_quota).post(set_quota))
        .route("/sim/admin/config", get(get_config).post(set_config))
        .route("/sim/admin/reset", post(reset))
        .route("/sim/admin/consents", get(consents))
        .route("/sim/admin/consents/{id}/revoke", post(revoke_consent))
        .route("/sim/admin/prms/{prm}/revoke", post(revoke_prm))
        .route("/sim/admin/tokens", get(tokens))
        .route("/sim/admin/tokens/expire", post(expire_tokens))
        .route("/sim/admin/meters", get(meters))
        .route("/sim/admin/sge/services", get(sge_services))
}

fn bad(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": message.into() })),
    )
        .into_response()
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

#[derive(Serialize)]
struct Calls {
    total: u64,
    endpoints: BTreeMap<String, CallCounter>,
}

async fn calls(State(sim): State<Sim>) -> Json<Calls> {
    let st = sim.lock();
    Json(Calls {
        total: st.total_calls,
        endpoints: st.calls.clone(),
    })
}

async fn clear_calls(State(sim): State<Sim>) -> StatusCode {
    sim.lock().clear_calls();
    StatusCode::NO_CONTENT
}

async fn requests(State(sim): State<Sim>) -> Response {
    Json(sim.lock().requests.iter().cloned().collect::<Vec<_>>()).into_response()
}

async fn get_faults(State(sim): State<Sim>) -> Json<Faults> {
    Json(sim.lock().faults.clone())
}

async fn set_faults(State(sim): State<Sim>, body: Bytes) -> Response {
    let faults: Faults = match parse_body(&body) {
        Ok(f) => f,
        Err(e) => return bad(e),
    };
    if let Err(e) = faults.validate() {
        return bad(e);
    }
    tracing::info!(?faults, "fault switches set");
    sim.lock().set_faults(faults.clone());
    Json(faults).into_response()
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.lock().set_faults(Faults::default());
    StatusCode::NO_CONTENT
}

#[derive(Serialize)]
struct QuotaView {
    limits: QuotaLimits,
    /// Calls counted per bucket over the last hour.
    usage: BTreeMap<String, usize>,
}

async fn get_quota(State(sim): State<Sim>) -> Json<QuotaView> {
    let st = sim.lock();
    Json(QuotaView {
        limits: st.quota.limits.clone(),
        usage: st.quota.usage(Instant::now()),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaChange {
    per_second: Option<u32>,
    per_hour_2026: Option<u32>,
    per_hour_v5: Option<u32>,
    per_hour_v1: Option<u32>,
    /// Forget the calls counted so far.
    #[serde(default)]
    reset_usage: bool,
}

async fn set_quota(State(sim): State<Sim>, body: Bytes) -> Response {
    let change: QuotaChange = match parse_body(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let mut st = sim.lock();
    let limits = &mut st.quota.limits;
    if let Some(v) = change.per_second {
        limits.per_second = v;
    }
    if let Some(v) = change.per_hour_2026 {
        limits.per_hour_2026 = v;
    }
    if let Some(v) = change.per_hour_v5 {
        limits.per_hour_v5 = v;
    }
    if let Some(v) = change.per_hour_v1 {
        limits.per_hour_v1 = v;
    }
    if change.reset_usage {
        st.quota.clear_usage();
    }
    Json(QuotaView {
        limits: st.quota.limits.clone(),
        usage: st.quota.usage(Instant::now()),
    })
    .into_response()
}

async fn get_config(State(sim): State<Sim>) -> Response {
    Json(sim.lock().config.clone()).into_response()
}

/// Fields present are changed; `null` clears `today` (back to the clock) or
/// `redirect_uri`.
async fn set_config(State(sim): State<Sim>, body: Bytes) -> Response {
    let value: Value = match parse_body(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let Some(object) = value.as_object() else {
        return bad("the body must be a JSON object");
    };
    let mut config = sim.lock().config.clone();
    for (key, v) in object {
        match key.as_str() {
            "today" => {
                config.today = match v {
                    Value::Null => None,
                    Value::String(s) => match parse_date(s) {
                        Ok(d) => Some(d),
                        Err(e) => return bad(format!("today: {e}")),
                    },
                    _ => return bad("today must be a YYYY-MM-DD string or null"),
                }
            }
            "redirect_uri" => {
                config.redirect_uri = match v {
                    Value::Null => None,
                    Value::String(s) => match Url::parse(s) {
                        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                        _ => {
                            return bad(format!(
                                "redirect_uri must be an absolute http(s) URL, not {s:?}"
                            ));
                        }
                    },
                    _ => return bad("redirect_uri must be a string or null"),
                }
            }
            "token_ttl_secs" => match v.as_u64() {
                Some(n) if n > 0 => config.token_ttl_secs = n,
                _ => return bad("token_ttl_secs must be a positive integer"),
            },
            "expires_in_as_string" => match v.as_bool() {
                Some(b) => config.expires_in_as_string = b,
                None => return bad("expires_in_as_string must be a boolean"),
            },
            other => {
                return bad(format!(
                    "unknown config field {other:?} (known: today, redirect_uri, token_ttl_secs, expires_in_as_string)"
                ));
            }
        }
    }
    tracing::info!(?config, "run-time config changed");
    sim.lock().config = config.clone();
    Json(config).into_response()
}

async fn reset(State(sim): State<Sim>) -> StatusCode {
    sim.reset();
    tracing::info!("simulator reset");
    StatusCode::NO_CONTENT
}

#[derive(Serialize)]
struct ConsentView {
    #[serde(flatten)]
    consent: super::state::Consent,
    active: bool,
}

async fn consents(State(sim): State<Sim>) -> Response {
    let today = sim.today();
    let list: Vec<ConsentView> = sim
        .lock()
        .consents
        .values()
        .map(|c| ConsentView {
            active: c.active(today),
            consent: c.clone(),
        })
        .collect();
    Json(list).into_response()
}

async fn revoke_consent(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return bad(format!("consent id must be an integer, not {id:?}"));
    };
    let today = sim.today();
    let mut st = sim.lock();
    match st.consents.get_mut(&id) {
        Some(c) => {
            if c.revoked.is_none() {
                c.revoked = Some(today);
            }
            Json(json!({ "revoked": [id] })).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no consent {id}") })),
        )
            .into_response(),
    }
}

async fn revoke_prm(State(sim): State<Sim>, Path(prm): Path<String>) -> Response {
    let prm: Prm = match prm.parse() {
        Ok(p) => p,
        Err(e) => return bad(format!("{prm:?}: {e}")),
    };
    let today = sim.today();
    let n = sim.lock().revoke_prm(prm, today);
    Json(json!({ "prm": prm, "revoked_consents": n })).into_response()
}

#[derive(Serialize)]
struct TokenView {
    /// The first 6 characters only.
    token: String,
    holder: Holder,
    issued: Timestamp,
    expires: Timestamp,
    expired: bool,
}

async fn tokens(State(sim): State<Sim>) -> Response {
    let now = Timestamp::now();
    let st = sim.lock();
    let access: Vec<TokenView> = st
        .access
        .iter()
        .map(|(t, a)| TokenView {
            token: format!("{}…", t.chars().take(6).collect::<String>()),
            holder: a.holder,
            issued: a.issued,
            expires: a.expires,
            expired: a.expires <= now,
        })
        .collect();
    let mut refresh: BTreeMap<u64, usize> = BTreeMap::new();
    for r in st.refresh.values() {
        *refresh.entry(r.consent).or_default() += 1;
    }
    Json(json!({
        "access_tokens": access,
        "refresh_tokens_per_consent": refresh,
        "pending_codes": st.codes.len(),
    }))
    .into_response()
}

/// Expire every access token now (refresh tokens stay valid).
async fn expire_tokens(State(sim): State<Sim>) -> Response {
    let now = Timestamp::now();
    let mut st = sim.lock();
    let n = st.access.len();
    for t in st.access.values_mut() {
        t.expires = now;
    }
    Json(json!({ "expired": n })).into_response()
}

async fn meters(State(_sim): State<Sim>) -> Response {
    Json(json!({ "profiles": PROFILES, "meters": known_meters() })).into_response()
}

/// The SGE access services ordered since start (stopped ones included, with
/// their `dateArret`), in order.
async fn sge_services(State(sim): State<Sim>) -> Response {
    Json(json!({ "services": sim.lock().sge.services })).into_response()
}
