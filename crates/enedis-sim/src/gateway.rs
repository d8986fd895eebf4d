//! The WSO2-like gateway in front of every API: counts and logs calls, injects
//! faults, checks bearer tokens, enforces quotas, and post-processes answers
//! (truncated bodies, `application/octet-stream`).
//!
//! Order for one call: count it; if faults affect it, wait the latency, then a
//! forced status, a random failure or an HTML page may answer in place of the API;
//! then the token (401), then the quota (429, refused calls are not counted), then
//! the API itself; last, truncation and content type.

use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::errors::{
    Gen, Refusal, error_body, generation_error, invalid_credentials, missing_credentials,
    wso2_fault,
};
use super::state::{ForcedStatus, Holder, Sim, Throttled};

/// Which API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Admin,
    Authorize,
    TokenV1,
    TokenV3,
    V3,
    V4,
    V5,
    Mesure2026,
    Subscribed,
    Itc,
    /// SGE (B2B SOAP): faults are SOAP faults.
    Sge,
    Other,
}

const ITC_BASES: [&str; 4] = [
    "/situation_contrat_auto/",
    "/synth_contrat_auto/",
    "/donnees_generales_auto/",
    "/comptage_auto/",
];

pub fn classify(path: &str) -> Api {
    let starts = |p: &str| path.starts_with(p) || path == p.trim_end_matches('/');
    if starts("/sim/admin/") {
        Api::Admin
    } else if path.starts_with("/dataconnect/") {
        Api::Authorize
    } else if path == "/v1/oauth2/token" {
        Api::TokenV1
    } else if path.starts_with("/oauth2/v3/") {
        Api::TokenV3
    } else if starts("/v3/metering_data/") {
        Api::V3
    } else if starts("/v4/metering_data/") {
        Api::V4
    } else if path.starts_with("/metering_data_") || path.starts_with("/customers_") {
        Api::V5
    } else if starts("/mesure_synchrone_auto/") {
        Api::Mesure2026
    } else if starts("/subscribed_services/") {
        Api::Subscribed
    } else if ITC_BASES.iter().any(|b| starts(b)) {
        Api::Itc
    } else if crate::sge::is_sge_path(path) {
        Api::Sge
    } else {
        Api::Other
    }
}

impl Api {
    /// The generation whose error shapes apply.
    pub fn generation(self) -> Option<Gen> {
        match self {
            Api::V3 => Some(Gen::V3),
            Api::V4 => Some(Gen::V4),
            Api::V5 | Api::TokenV1 | Api::TokenV3 => Some(Gen::V5),
            Api::Mesure2026 | Api::Subscribed | Api::Itc => Some(Gen::Api2026),
            Api::Admin | Api::Authorize | Api::Sge | Api::Other => None,
        }
    }

    fn is_data(self) -> bool {
        matches!(
            self,
            Api::V3 | Api::V4 | Api::V5 | Api::Mesure2026 | Api::Subscribed | Api::Itc | Api::Sge
        )
    }

    /// Whether a per-consent token (v3/v4) or an application token is required.
    fn token(self) -> Option<TokenNeed> {
        match self {
            Api::V3 | Api::V4 => Some(TokenNeed::Consent),
            Api::V5 | Api::Mesure2026 | Api::Subscribed | Api::Itc => Some(TokenNeed::Application),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenNeed {
    Consent,
    Application,
}

/// Query strings as logged and recorded: secrets replaced by `***`.
fn sanitise(query: &str) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let secret = matches!(
            k.as_ref(),
            "code" | "client_secret" | "refresh_token" | "access_token" | "token"
        );
        out.append_pair(&k, if secret { "***" } else { &v });
    }
    out.finish()
}

pub async fn gateway(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let api = classify(&path);
    if api == Api::Admin {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let query = request.uri().query().map(sanitise);
    let response = handle(&sim, api, &path, request, next).await;
    let status = response.status().as_u16();
    tracing::debug!(
        %method,
        %path,
        query = query.as_deref().unwrap_or(""),
        status,
        "request"
    );
    sim.lock().record(&method, &path, query, status);
    response
}

/// What the fault switches decide for one call before the API runs.
struct Before {
    latency: u64,
    forced: Option<ForcedStatus>,
    fail: bool,
    html: bool,
}

fn take(count: &mut u32) -> bool {
    if *count > 0 {
        *count -= 1;
        true
    } else {
        false
    }
}

async fn handle(sim: &Sim, api: Api, path: &str, mut request: Request, next: Next) -> Response {
    let generation = api.generation().unwrap_or(Gen::V5);
    let affected = {
        let st = sim.lock();
        match &st.faults.path_prefix {
            Some(prefix) => api != Api::Authorize && path.starts_with(prefix.as_str()),
            None => api.is_data(),
        }
    };
    if affected {
        let before = {
            let mut st = sim.lock();
            let forced = match &mut st.faults.force_status {
                Some(f) if f.count > 0 => {
                    f.count -= 1;
                    Some(f.clone())
                }
                _ => None,
            };
            let fail = forced.is_none() && st.roll_failure();
            let html = forced.is_none() && !fail && take(&mut st.faults.html_body);
            Before {
                latency: st.faults.latency_ms,
                forced,
                fail,
                html,
            }
        };
        if before.latency > 0 {
            tokio::time::sleep(Duration::from_millis(before.latency)).await;
        }
        if let Some(forced) = before.forced {
            if api == Api::Sge && forced.body.is_none() {
                return crate::sge::forced_fault(path, forced.status);
            }
            return forced_response(generation, &forced);
        }
        if before.fail {
            if api == Api::Sge {
                return crate::sge::forced_fault(path, 500);
            }
            return Refusal::Technical.response(generation);
        }
        if before.html {
            return html_error_page();
        }
    }

    if let Some(need) = api.token() {
        match authenticate(sim, &request, need) {
            Ok(holder) => {
                request.extensions_mut().insert(holder);
            }
            Err(AuthFailure::Missing) => return missing_credentials(),
            Err(AuthFailure::Invalid) => return invalid_credentials(),
        }
        if let Some(response) = throttle(sim, api, path) {
            return response;
        }
    }

    if api == Api::Sge
        && let Some(response) = sge_pace(sim, path)
    {
        return response;
    }

    let mut response = next.run(request).await;

    if affected {
        let (truncate, octet) = {
            let mut st = sim.lock();
            let json = is_json(&response);
            let truncate = json && take(&mut st.faults.truncated_body);
            (truncate, json && st.faults.octet_stream)
        };
        if truncate {
            response = truncated(response).await;
        }
        if octet {
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
    }
    response
}

/// `--sge-pace`: at most that many SGE calls in any second; a call over it is
/// refused (not admitted, so it does not count against the next ones).
fn sge_pace(sim: &Sim, path: &str) -> Option<Response> {
    let pace = sim.options().sge_pace;
    if pace == 0 {
        return None;
    }
    let now = Instant::now();
    {
        let mut st = sim.lock();
        let window = &mut st.sge_window;
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() < pace as usize {
            window.push_back(now);
            return None;
        }
    }
    tracing::info!(%path, pace, "SGE pace exceeded, answering a SOAP fault");
    Some(crate::sge::pace_fault(path))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn truncated(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(cut))
}

fn html_error_page() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\
         <body><h1>Service Unavailable</h1><p>The server is temporarily unable to service \
         your request. Please try again later.</p><hr><address>enedis-sim</address></body></html>\n",
    )
        .into_response()
}

fn forced_response(generation: Gen, forced: &ForcedStatus) -> Response {
    let status = StatusCode::from_u16(forced.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match &forced.body {
        Some(body) => {
            let content_type = forced
                .content_type
                .as_deref()
                .and_then(|c| HeaderValue::from_str(c).ok())
                .unwrap_or(HeaderValue::from_static("application/json"));
            (status, [(header::CONTENT_TYPE, content_type)], body.clone()).into_response()
        }
        None if status == StatusCode::INTERNAL_SERVER_ERROR => {
            Refusal::Technical.response(generation)
        }
        None => generation_error(
            generation,
            status,
            status.as_str(),
            status.canonical_reason().unwrap_or("forced by enedis-sim"),
        ),
    }
}

/// Why a bearer token was refused.
enum AuthFailure {
    Missing,
    Invalid,
}

fn authenticate(sim: &Sim, request: &Request, need: TokenNeed) -> Result<Holder, AuthFailure> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(AuthFailure::Missing);
    };
    let now = Timestamp::now();
    let st = sim.lock();
    match st.access.get(token) {
        Some(t) if t.expires > now => match (need, t.holder) {
            (TokenNeed::Application, Holder::Application) => Ok(t.holder),
            (TokenNeed::Consent, Holder::Consent(_)) => Ok(t.holder),
            _ => Err(AuthFailure::Invalid),
        },
        _ => Err(AuthFailure::Invalid),
    }
}

fn bucket(api: Api, path: &str) -> (String, fn(&super::state::QuotaLimits) -> u32) {
    match api {
        Api::V3 | Api::V4 => ("v3/v4".to_owned(), |l| l.per_hour_v1),
        Api::V5 => ("v5".to_owned(), |l| l.per_hour_v5),
        _ => {
            // 2026: one quota per API, named by the first path segment.
            let name = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned();
            (name, |l| l.per_hour_2026)
        }
    }
}

/// WSO2's `nextAccessTime` format, e.g. `2026-Oct-04 12:00:01+0000 UTC`.
fn next_access_time(after: Duration) -> String {
    let at = Timestamp::now()
        .checked_add(SignedDuration::try_from(after).unwrap_or(SignedDuration::ZERO))
        .unwrap_or_else(|_| Timestamp::now());
    at.strftime("%Y-%b-%d %H:%M:%S+0000 UTC").to_string()
}

fn retry_after_secs(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

fn throttle(sim: &Sim, api: Api, path: &str) -> Option<Response> {
    let (name, hourly) = bucket(api, path);
    let verdict = {
        let mut st = sim.lock();
        let per_hour = hourly(&st.quota.limits);
        st.quota.admit(&name, per_hour, Instant::now())
    };
    let throttled = verdict.err()?;
    let (retry, per_second) = match throttled {
        Throttled::Second { retry_after } => (retry_after, true),
        Throttled::Hour { retry_after } => (retry_after, false),
    };
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    let retry_header = |mut r: Response| {
        if let Ok(v) = HeaderValue::from_str(&retry_after_secs(retry).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    };
    let response = match (api.generation(), per_second) {
        (Some(Gen::Api2026), _) => retry_header(generation_error(
            Gen::Api2026,
            too_many,
            "429",
            "SLA dépassé",
        )),
        (Some(Gen::V5), true) => {
            let next = next_access_time(retry);
            retry_header(wso2_fault(
                too_many,
                900807,
                "Message throttled out",
                &format!("You have exceeded your quota .You can access API after {next}"),
                Some(&next),
            ))
        }
        // v5 hourly quota: no hint when it will pass.
        (Some(Gen::V5), false) => {
            let limit = sim.lock().quota.limits.per_hour_v5;
            error_body(
                too_many,
                "429",
                &format!("Quota Q4 reached: {limit} calls per hour for this application"),
            )
        }
        _ => {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Throttle<'a> {
                code: &'a str,
                message: &'a str,
                description: &'a str,
                next_access_time: String,
            }
            retry_header(
                (
                    too_many,
                    axum::Json(Throttle {
                        code: "900804",
                        message: "Message throttled out",
                        description: "You have exceeded your quota",
                        next_access_time: next_access_time(retry),
                    }),
                )
                    .into_response(),
            )
        }
    };
    tracing::info!(bucket = %name, per_second, "quota exceeded, answering 429");
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("/sim/admin/calls"), Api::Admin);
        assert_eq!(classify("/mesure_synchrone_auto/v2/x"), Api::Mesure2026);
        assert_eq!(classify("/mesure_synchrone_auto"), Api::Mesure2026);
        assert_eq!(classify("/situation_contrat_auto/v1"), Api::Itc);
        assert_eq!(classify("/metering_data_dc/v5/daily_consumption"), Api::V5);
        assert_eq!(classify("/v4/metering_data/daily_consumption"), Api::V4);
        assert_eq!(classify("/foo"), Api::Other);
    }

    #[test]
    fn secrets_are_masked() {
        let q = sanitise("code=abc&state=x1&refresh_token=zz");
        assert_eq!(q, "code=***&state=x1&refresh_token=***");
    }
}
