//! Consent pages and token endpoints.
//!
//! - `GET /dataconnect/v1/oauth2/authorize` (v3/v4/v5) and `…/v2/…` (2026) check the
//!   request and show the consent page; `POST` on the same path takes the decision
//!   and redirects (302) exactly as Enedis: v1 `code`, `state`, `usage_point_id`;
//!   v2 `autorisation_id`, `state`; refusal and portal error without `state`.
//!   `sim_auto=accept|refuse` (plus `sim_prm=…` without a profile) decides at once.
//! - `POST /v1/oauth2/token`: authorization code (single use, 180 s) and rotating
//!   refresh tokens, one pair per consent.
//! - `POST /oauth2/v3/token`: `client_credentials`, one token for the application.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jiff::civil::Date;
use jiff::{SignedDuration, Span, Timestamp, ToSpan};
use serde::Serialize;
use url::Url;

use crate::model::Prm;

use super::catalogue::{PROFILES, profile_of_state};
use super::consent_request::{AuthRequest, Version};
use super::errors::{error_body, invalid_credentials};
use super::metering::{param, parse_query};
use super::page;
use super::state::{AccessToken, CodeGrant, Holder, Origin, RefreshGrant, Sim, random_token};

const CODE_LIFETIME: SignedDuration = SignedDuration::from_secs(180);
const MAX_PRMS: usize = 10;

fn invalid(description: &str) -> Response {
    error_body(StatusCode::BAD_REQUEST, "Invalid_request", description)
}

/// The end day of a consent of `duration` given `today`; at most 3 years.
pub fn consent_end(duration: &str, today: Date) -> Result<Date, String> {
    let shape = "duration must be an ISO 8601 period of years, months, weeks or days, such as P1Y, P6M or P1095D";
    if !duration.starts_with('P') || duration.contains(['T', 't']) {
        return Err(format!("{shape}, not {:?}", shorten(duration)));
    }
    let span: Span = duration
        .parse()
        .map_err(|_| format!("{shape}, not {:?}", shorten(duration)))?;
    if span.is_zero() || span.is_negative() {
        return Err(format!("duration must be positive, not {duration:?}"));
    }
    let end = today
        .checked_add(span)
        .map_err(|_| format!("duration {duration:?} is out of range"))?;
    if end > today.saturating_add(3.years()) {
        return Err(format!("duration {duration:?} exceeds 3 years"));
    }
    Ok(end)
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

fn absolute_http_url(s: &str) -> Option<Url> {
    Url::parse(s)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// Why a consent request is refused (answered 400, never redirected).
#[derive(Debug)]
enum AuthError {
    UnknownClient,
    Invalid(String),
}

impl AuthError {
    fn response(&self) -> Response {
        match self {
            AuthError::UnknownClient => error_body(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "Client authentication failed: unknown client_id",
            ),
            AuthError::Invalid(description) => invalid(description),
        }
    }
}

/// Check a consent request (query of the GET, or hidden fields of the POST).
fn validate(
    sim: &Sim,
    version: Version,
    params: &[(String, String)],
) -> Result<AuthRequest, AuthError> {
    let options = sim.options();
    let client_id = match param(params, "client_id") {
        None | Some("") => {
            return Err(AuthError::Invalid(
                "client_id parameter is required".to_owned(),
            ));
        }
        Some(id) if id != options.client_id => {
            return Err(AuthError::UnknownClient);
        }
        Some(id) => id.to_owned(),
    };
    match param(params, "response_type") {
        None | Some("") => {
            return Err(AuthError::Invalid(
                "Response type parameter is required".to_owned(),
            ));
        }
        Some("code") => {}
        Some(_) => return Err(AuthError::Invalid("response_type must be code".to_owned())),
    }
    let state = param(params, "state").map(str::to_owned);
    if let Some(s) = &state
        && s.chars().count() > 100
    {
        return Err(AuthError::Invalid(
            "state must be at most 100 characters long".to_owned(),
        ));
    }
    let duration = match param(params, "duration") {
        None | Some("") => {
            return Err(AuthError::Invalid(
                "duration parameter is required".to_owned(),
            ));
        }
        Some(d) => d.to_owned(),
    };
    let expires = consent_end(&duration, sim.today()).map_err(AuthError::Invalid)?;
    let registered = sim.lock().config.redirect_uri.clone();
    let (redirect, redirect_param) = match version {
        Version::V1 => {
            let given = param(params, "redirect_uri")
                .or_else(|| param(params, "redirect_URI"))
                .filter(|s| !s.is_empty());
            match (given, registered) {
                (Some(given), registered) => {
                    let Some(url) = absolute_http_url(given) else {
                        return Err(AuthError::Invalid(
                            "redirect_uri must be an absolute http(s) URL".to_owned(),
                        ));
                    };
                    if registered.is_some_and(|r| r != url) {
                        return Err(AuthError::Invalid("redirect_uri does not match the redirect URI registered for this application".to_owned()));
                    }
                    (url, Some(given.to_owned()))
                }
                (None, Some(registered)) => (registered, None),
                (None, None) => {
                    return Err(AuthError::Invalid(
                        "no redirect_uri given and no redirect URI registered for this application"
                            .to_owned(),
                    ));
                }
            }
        }
        // 2026 sends no redirect_uri: Enedis uses the registered one.
        Version::V2 => match registered {
            Some(r) => (r, None),
            None => {
                return Err(AuthError::Invalid("no redirect URI registered for this application (start enedis-sim with --redirect-uri or POST /sim/admin/config)".to_owned()));
            }
        },
    };
    let profile = state.as_deref().and_then(profile_of_state);
    Ok(AuthRequest {
        version,
        client_id,
        state,
        duration,
        expires,
        redirect,
        redirect_param,
        profile,
    })
}

fn redirect_with(base: &Url, pairs: &[(&str, &str)]) -> Response {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    (
        StatusCode::FOUND,
        [(header::LOCATION, url.as_str().to_owned())],
    )
        .into_response()
}

fn refusal(req: &AuthRequest) -> Response {
    redirect_with(
        &req.redirect,
        &[
            ("code", "403"),
            ("error", "access_denied"),
            ("error_description", "authorization_request_refused"),
        ],
    )
}

fn portal_error(req: &AuthRequest) -> Response {
    redirect_with(
        &req.redirect,
        &[
            ("code", "500"),
            ("error", "server_error"),
            ("error_description", "lincs-internal-server-error"),
        ],
    )
}

/// PRMs typed by a tester: 14-digit numbers separated by commas, semicolons or
/// spaces.
pub fn parse_prms(typed: Option<&str>) -> Result<Vec<Prm>, String> {
    let mut prms: Vec<Prm> = Vec::new();
    for part in typed
        .unwrap_or("")
        .split([',', ';', ' ', '\t', '\n', '\r'])
        .filter(|s| !s.is_empty())
    {
        let prm: Prm = part
            .parse()
            .map_err(|e| format!("« {} » n'est pas un PRM : {e}", shorten(part)))?;
        if !prms.contains(&prm) {
            prms.push(prm);
        }
    }
    if prms.is_empty() {
        return Err("Saisissez au moins un numéro de PRM (14 chiffres).".to_owned());
    }
    if prms.len() > MAX_PRMS {
        return Err(format!("Au plus {MAX_PRMS} PRM par consentement."));
    }
    Ok(prms)
}

/// The consumer accepts: record the consent and redirect.
fn accept(sim: &Sim, req: &AuthRequest, typed: Option<&str>) -> Result<Response, String> {
    let profile = req.profile.and_then(|d| PROFILES.get(usize::from(d)));
    if req.profile == Some(9) {
        return Ok(refusal(req));
    }
    let prms = match profile {
        Some(p) => p.prms.iter().filter_map(|s| s.parse().ok()).collect(),
        None => parse_prms(typed)?,
    };
    let today = sim.today();
    let origin = match req.version {
        Version::V1 => Origin::V1,
        Version::V2 => Origin::V2,
    };
    let mut st = sim.lock();
    let id = st.add_consent(
        prms.clone(),
        origin,
        req.profile,
        req.duration.clone(),
        today,
        req.expires,
    );
    if req.profile == Some(8)
        && let Some(c) = st.consents.get_mut(&id)
    {
        // Profile 8 revokes right after consenting.
        c.revoked = Some(today);
    }
    let state = req.state.as_deref();
    Ok(match req.version {
        Version::V1 => {
            let code = random_token(32);
            let now = Timestamp::now();
            st.sweep(now);
            st.codes.insert(
                code.clone(),
                CodeGrant {
                    consent: id,
                    redirect_uri: req.redirect.to_string(),
                    expires: now.saturating_add(CODE_LIFETIME).unwrap_or(now),
                },
            );
            let prms = prms.iter().map(Prm::as_str).collect::<Vec<_>>().join(",");
            let mut pairs = vec![("code", code.as_str())];
            if let Some(s) = state {
                pairs.push(("state", s));
            }
            pairs.push(("usage_point_id", &prms));
            redirect_with(&req.redirect, &pairs)
        }
        Version::V2 => {
            let id = id.to_string();
            let mut pairs = vec![("autorisation_id", id.as_str())];
            if let Some(s) = state {
                pairs.push(("state", s));
            }
            redirect_with(&req.redirect, &pairs)
        }
    })
}

fn authorize(sim: &Sim, version: Version, params: &[(String, String)]) -> Response {
    let req = match validate(sim, version, params) {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    if sim.lock().faults.portal_error {
        return portal_error(&req);
    }
    match param(params, "sim_auto") {
        None => page::consent_page(&req, None, StatusCode::OK),
        Some("accept") => {
            accept(sim, &req, param(params, "sim_prm")).unwrap_or_else(|e| invalid(&e))
        }
        Some("refuse") => refusal(&req),
        Some(_) => invalid("sim_auto must be accept or refuse"),
    }
}

fn decide(sim: &Sim, version: Version, form: &[(String, String)]) -> Response {
    let req = match validate(sim, version, form) {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    if sim.lock().faults.portal_error {
        return portal_error(&req);
    }
    match param(form, "decision") {
        Some("accept") => accept(sim, &req, param(form, "prms"))
            .unwrap_or_else(|e| page::consent_page(&req, Some(&e), StatusCode::BAD_REQUEST)),
        Some("refuse") => refusal(&req),
        _ => invalid("decision must be accept or refuse"),
    }
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub async fn authorize_v1(State(sim): State<Sim>, RawQuery(query): RawQuery) -> Response {
    authorize(&sim, Version::V1, &parse_query(query.as_deref()))
}

pub async fn authorize_v2(State(sim): State<Sim>, RawQuery(query): RawQuery) -> Response {
    authorize(&sim, Version::V2, &parse_query(query.as_deref()))
}

pub async fn decide_v1(State(sim): State<Sim>, body: Bytes) -> Response {
    decide(&sim, Version::V1, &parse_form(&body))
}

pub async fn decide_v2(State(sim): State<Sim>, body: Bytes) -> Response {
    decide(&sim, Version::V2, &parse_form(&body))
}

// ------------------------------------------------------------------ tokens

const INVALID_REQUEST: &str = "The request is missing a required parameter, includes an unsupported parameter value (other than grant type), repeats a parameter, includes multiple credentials, utilizes more than one mechanism for authenticating the client, or is otherwise malformed";
const INVALID_GRANT: &str = "The provided authorization grant (e.g. authorization code, resource owner credentials) or refresh token is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client";
const UNSUPPORTED_GRANT: &str =
    "The authorization grant type is not supported by the authorization server";

fn token_error(error: &str, description: &str) -> Response {
    error_body(StatusCode::BAD_REQUEST, error, description)
}

/// Client credentials from HTTP Basic, else from the form.
fn client_credentials(headers: &HeaderMap, form: &[(String, String)]) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        return Some((id.to_owned(), secret.to_owned()));
    }
    Some((
        param(form, "client_id")?.to_owned(),
        param(form, "client_secret")?.to_owned(),
    ))
}

/// Read the form body and authenticate the client.
/// Why a token request is refused before its grant is looked at.
enum TokenRequestError {
    NotForm,
    BadClient,
}

impl TokenRequestError {
    fn response(&self) -> Response {
        match self {
            TokenRequestError::NotForm => token_error(
                "invalid_request",
                "Le Content-Type doit être application/x-www-form-urlencoded",
            ),
            TokenRequestError::BadClient => invalid_credentials(),
        }
    }
}

fn token_request(
    sim: &Sim,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, TokenRequestError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(TokenRequestError::NotForm);
    }
    let form = parse_form(body);
    let options = sim.options();
    match client_credentials(headers, &form) {
        Some((id, secret))
            if id == options.client_id && secret == options.client_secret.expose() =>
        {
            Ok(form)
        }
        _ => Err(TokenRequestError::BadClient),
    }
}

#[derive(Serialize)]
struct ConsentToken {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    scope: String,
    refresh_token_issued_at: String,
    issued_at: String,
    usage_points_id: String,
}

fn v1_scope() -> String {
    ["v3", "v4"]
        .iter()
        .flat_map(|v| {
            [
                "daily_consumption",
                "consumption_load_curve",
                "consumption_max_power",
                "daily_production",
                "production_load_curve",
            ]
            .iter()
            .map(move |r| format!("/{v}/metering_data/{r}.GET"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn token_v1(
    State(sim): State<Sim>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match token_request(&sim, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.response(),
    };
    let now = Timestamp::now();
    let query = parse_query(query.as_deref());
    let mut st = sim.lock();
    st.sweep(now);
    let mut used_refresh: Option<String> = None;
    let consent = match param(&form, "grant_type") {
        Some("authorization_code") => {
            let Some(code) = param(&form, "code") else {
                return token_error("invalid_request", INVALID_REQUEST);
            };
            let Some(redirect_uri) = param(&query, "redirect_uri") else {
                return token_error("invalid_request", INVALID_REQUEST);
            };
            // Single use: the code is gone whatever happens next.
            let Some(grant) = st.codes.remove(code).filter(|g| g.expires > now) else {
                return token_error("invalid_grant", INVALID_GRANT);
            };
            let same_redirect = match (Url::parse(redirect_uri), Url::parse(&grant.redirect_uri)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if !same_redirect {
                return token_error("invalid_grant", INVALID_GRANT);
            }
            grant.consent
        }
        Some("refresh_token") => {
            let Some(refresh) = param(&form, "refresh_token") else {
                return token_error("invalid_request", INVALID_REQUEST);
            };
            // Rotation: every use returns a new refresh token. The one used stays valid
            // only until its successor is first used (see RefreshGrant).
            let Some(grant) = st.refresh.get_mut(refresh) else {
                return token_error("invalid_grant", INVALID_GRANT);
            };
            let consent = grant.consent;
            let stale = [grant.predecessor.take(), grant.successor.take()];
            for token in stale.into_iter().flatten() {
                st.refresh.remove(&token);
            }
            used_refresh = Some(refresh.to_owned());
            consent
        }
        None => return token_error("invalid_request", INVALID_REQUEST),
        Some(_) => return token_error("unsupported_grant_type", UNSUPPORTED_GRANT),
    };
    let Some(prms) = st
        .consents
        .get(&consent)
        .map(|c| c.prms.iter().map(Prm::as_str).collect::<Vec<_>>().join(","))
    else {
        return token_error("invalid_grant", INVALID_GRANT);
    };
    let ttl = st.config.token_ttl_secs;
    let access = random_token(40);
    let refresh = random_token(46);
    st.access.insert(
        access.clone(),
        AccessToken {
            holder: Holder::Consent(consent),
            issued: now,
            expires: expiry(now, ttl),
        },
    );
    if let Some(grant) = used_refresh.as_ref().and_then(|t| st.refresh.get_mut(t)) {
        grant.successor = Some(refresh.clone());
    }
    st.refresh.insert(
        refresh.clone(),
        RefreshGrant {
            consent,
            predecessor: used_refresh,
            successor: None,
        },
    );
    drop(st);
    let ms = now.as_millisecond().to_string();
    Json(ConsentToken {
        access_token: access,
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: refresh,
        scope: v1_scope(),
        refresh_token_issued_at: ms.clone(),
        issued_at: ms,
        usage_points_id: prms,
    })
    .into_response()
}

fn expiry(now: Timestamp, ttl: u64) -> Timestamp {
    let ttl = SignedDuration::from_secs(i64::try_from(ttl).unwrap_or(i64::MAX));
    now.saturating_add(ttl).unwrap_or(now)
}

#[derive(Serialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(u64),
    Text(String),
}

#[derive(Serialize)]
struct ApplicationToken {
    access_token: String,
    token_type: &'static str,
    expires_in: ExpiresIn,
    scope: &'static str,
}

pub async fn token_v3(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match token_request(&sim, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.response(),
    };
    match param(&form, "grant_type") {
        Some("client_credentials") => {}
        None => return token_error("invalid_request", INVALID_REQUEST),
        Some(_) => return token_error("unsupported_grant_type", UNSUPPORTED_GRANT),
    }
    let now = Timestamp::now();
    let access = random_token(40);
    let (ttl, as_string) = {
        let mut st = sim.lock();
        st.sweep(now);
        let ttl = st.config.token_ttl_secs;
        st.access.insert(
            access.clone(),
            AccessToken {
                holder: Holder::Application,
                issued: now,
                expires: expiry(now, ttl),
            },
        );
        (ttl, st.config.expires_in_as_string)
    };
    Json(ApplicationToken {
        access_token: access,
        token_type: "Bearer",
        expires_in: if as_string {
            ExpiresIn::Text(ttl.to_string())
        } else {
            ExpiresIn::Number(ttl)
        },
        scope: "default",
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn durations() {
        let today = date(2026, 10, 4);
        assert_eq!(consent_end("P1Y", today).unwrap(), date(2027, 10, 4));
        assert_eq!(consent_end("P1095D", today).unwrap(), date(2029, 10, 3));
        assert!(consent_end("P3Y", today).is_ok());
        assert!(consent_end("P3Y1D", today).unwrap_err().contains("3 years"));
        assert!(consent_end("PT1H", today).is_err());
        assert!(consent_end("1Y", today).is_err());
        assert!(consent_end("P0D", today).is_err());
        assert!(consent_end("P", today).is_err());
    }

    #[test]
    fn typed_prms() {
        let p = parse_prms(Some("12345678901234, 12345678901234;22222222222222")).unwrap();
        assert_eq!(p.len(), 2);
        assert!(parse_prms(Some("1234")).unwrap_err().contains("1234"));
        assert!(parse_prms(Some("  ")).is_err());
    }
}
