//! Consents, from the consumer's trip to Enedis to the consent we store: the
//! authorize URL we send them to, the duration they are asked for, the callback
//! Enedis sends them back with, and its resolution into a stored consent for each
//! generation (`EnedisClient::resolve`, behind [`super::Upstream::resolve_consent`]):
//!
//! - 2026: the `autorisation_id` of the callback, whose PRMs and validity
//!   `subscribed_services/v1` gives;
//! - v5: the PRMs of the callback's `usage_point_id`, read with the application token;
//! - v3/v4: the callback's `code`, exchanged at once for the consent's own tokens
//!   ([`exchange_code`]).

use std::str::FromStr;
use std::sync::Arc;

use jiff::civil::Date;
use jiff::{Span, ToSpan};
use reqwest::Method;
use url::Url;

use super::client::{Auth, EnedisClient};
use super::error::{self, UpstreamError};
use super::http::{Body, Call, Shared, Tally};
use super::limiter::{Ask, Class};
use super::{api2026, token};
use crate::config::{ApiGeneration, EnedisConfig};
use crate::quoalise::Prm;
use crate::store::{Consent, NewConsent, TokenSet, now_seconds};
use crate::time::{PARIS, day_start, paris_today};

/// How long a consent is asked for: an ISO 8601 period of years, months, weeks and
/// days (`P1Y`, `P6M`, `P1095D`…), positive and at most 3 years.
#[derive(Debug, Clone)]
pub struct ConsentDuration {
    span: Span,
    text: String,
}

impl ConsentDuration {
    /// The duration as sent to Enedis, e.g. `P1Y`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The end of a consent starting at `start` (UTC seconds), in Paris calendar terms.
    pub fn end_from(&self, start: i64) -> Result<i64, UpstreamError> {
        let zoned = jiff::Timestamp::from_second(start)
            .map_err(|e| UpstreamError::BadConsentRequest(e.to_string()))?
            .to_zoned_datetime(PARIS.clone());
        zoned
            .checked_add(self.span)
            .map(|end| end.timestamp().as_second())
            .map_err(|e| UpstreamError::BadConsentRequest(format!("duration {}: {e}", self.text)))
    }

    /// Parse and check against `today` (the 3-year limit is calendar years).
    pub fn parse_at(input: &str, today: Date) -> Result<ConsentDuration, UpstreamError> {
        let bad = |why: String| {
            UpstreamError::BadConsentRequest(format!(
                "invalid consent duration {:?}: {why}",
                input.chars().take(40).collect::<String>()
            ))
        };
        let trimmed = input.trim();
        if !trimmed.starts_with(['P', 'p']) {
            return Err(bad(
                "expected an ISO 8601 period such as P1Y, P6M or P90D".into()
            ));
        }
        let span: Span = trimmed
            .parse()
            .map_err(|e| bad(format!("expected an ISO 8601 period such as P1Y ({e})")))?;
        if span.get_hours() != 0
            || span.get_minutes() != 0
            || span.get_seconds() != 0
            || span.get_milliseconds() != 0
            || span.get_microseconds() != 0
            || span.get_nanoseconds() != 0
        {
            return Err(bad("only years, months, weeks and days are allowed".into()));
        }
        if span.is_negative() || span.is_zero() {
            return Err(bad("it must be positive".into()));
        }
        let end = today.checked_add(span).map_err(|e| bad(e.to_string()))?;
        let limit = today.saturating_add(3.years());
        if end > limit {
            return Err(bad(format!(
                "Enedis accepts at most 3 years (P3Y); this one would end on {end}, after {limit}"
            )));
        }
        Ok(ConsentDuration {
            text: span.to_string(),
            span,
        })
    }
}

impl PartialEq for ConsentDuration {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ConsentDuration {}

impl FromStr for ConsentDuration {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConsentDuration::parse_at(s, paris_today(jiff::Timestamp::now()))
    }
}

impl std::fmt::Display for ConsentDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The query of Enedis's redirect back to us. Which fields matter depends on the
/// generation: `code` + `usage_point_id` (v3/v4), `usage_point_id` (v5),
/// `autorisation_id` (2026), or `error` + `error_description` on failure.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Callback {
    pub state: Option<String>,
    /// v3/v4: the authorization code, valid 180 s. A credential: never logged.
    pub code: Option<String>,
    pub usage_point_id: Option<String>,
    pub autorisation_id: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("state", &self.state)
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("usage_point_id", &self.usage_point_id)
            .field("autorisation_id", &self.autorisation_id)
            .field("error", &self.error)
            .field("error_description", &self.error_description)
            .finish()
    }
}

impl Callback {
    /// Read the redirect's query string (without the `?`). Unknown fields are ignored;
    /// empty values count as absent.
    pub fn from_query(query: &str) -> Callback {
        let mut callback = Callback::default();
        for (key, value) in url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            let slot = match key.as_ref() {
                "state" => &mut callback.state,
                "code" => &mut callback.code,
                "usage_point_id" => &mut callback.usage_point_id,
                "autorisation_id" => &mut callback.autorisation_id,
                "error" => &mut callback.error,
                "error_description" => &mut callback.error_description,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.to_owned());
        }
        callback
    }

    /// The consumer or the portal said no.
    pub fn refusal(&self) -> Option<UpstreamError> {
        self.error
            .as_ref()
            .map(|error| UpstreamError::ConsentRefused {
                error: error.clone(),
                description: self.error_description.clone(),
            })
    }
}

/// PRMs as Enedis lists them in `usage_point_id` / `usage_points_id`: separated by
/// `,` or `;`, possibly with spaces; sorted, without duplicates.
pub fn parse_prm_list(raw: &str, field: &str) -> Result<Vec<Prm>, UpstreamError> {
    let mut prms = Vec::new();
    for part in raw
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let prm: Prm = part.parse().map_err(|e| {
            UpstreamError::BadConsentRequest(format!(
                "{field} holds {:?}, which is not a PRM: {e}",
                part.chars().take(20).collect::<String>()
            ))
        })?;
        prms.push(prm);
    }
    if prms.is_empty() {
        return Err(UpstreamError::BadConsentRequest(format!(
            "{field} holds no PRM"
        )));
    }
    prms.sort();
    prms.dedup();
    Ok(prms)
}

/// The consent page to send a consumer to: the v1 page for v3/v4/v5, the v2 page for
/// 2026. `redirect_uri` goes only where that generation sends it (v3/v4); v5 and 2026
/// use the one registered for the application.
pub fn authorize_url(
    config: &EnedisConfig,
    state: &str,
    duration: &ConsentDuration,
) -> Result<Url, UpstreamError> {
    if state.is_empty() || state.len() > 100 {
        return Err(UpstreamError::BadConsentRequest(format!(
            "the OAuth state must be 1 to 100 characters, not {}",
            state.len()
        )));
    }
    if !state
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    {
        return Err(UpstreamError::BadConsentRequest(
            "the OAuth state may hold only letters, digits and - . _ ~".into(),
        ));
    }
    let version = match config.api {
        ApiGeneration::Api2026 => "v2",
        ApiGeneration::V5 | ApiGeneration::V4 | ApiGeneration::V3 => "v1",
    };
    let base = config.authorize_url.trim_end_matches('/');
    let mut url =
        Url::parse(&format!("{base}/dataconnect/{version}/oauth2/authorize")).map_err(|e| {
            UpstreamError::Config(format!(
                "enedis.authorize_url {:?} is not a URL: {e}",
                config.authorize_url
            ))
        })?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("client_id", &config.client_id)
            .append_pair("state", state)
            .append_pair("duration", duration.as_str())
            .append_pair("response_type", "code");
        if config.api.per_consent_tokens() {
            query.append_pair("redirect_uri", &config.redirect_uri);
        }
    }
    Ok(url)
}

impl EnedisClient {
    /// Turn Enedis's redirect into a stored consent owned by `owner`: see
    /// [`super::Upstream::resolve_consent`].
    pub(super) async fn resolve(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        if let Some(refusal) = callback.refusal() {
            return Err(refusal);
        }
        let new = match self.shared.config.api {
            ApiGeneration::Api2026 => self.consent_2026(owner, callback, duration).await?,
            ApiGeneration::V5 => consent_v5(owner, callback, duration)?,
            ApiGeneration::V4 | ApiGeneration::V3 => {
                return self.resolve_with_code(owner, callback, duration).await;
            }
        };
        Ok(self
            .shared
            .store
            .call(move |s| s.add_consent(&new, None))
            .await?)
    }

    /// 2026: the consent's PRMs and validity from `subscribed_services`.
    async fn consent_2026(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<NewConsent, UpstreamError> {
        let raw = callback.autorisation_id.as_deref().ok_or_else(|| {
            UpstreamError::BadConsentRequest(
                "the Data Connect 2026 callback has no autorisation_id".into(),
            )
        })?;
        let autorisation_id: i64 = raw
            .parse()
            .ok()
            .filter(|n| *n >= 0 && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                UpstreamError::BadConsentRequest(format!(
                    "autorisation_id {:?} is not a non-negative integer",
                    raw.chars().take(30).collect::<String>()
                ))
            })?;
        let tally = Tally::new(Ask::peer(owner, Class::Interactive));
        // Every state, not only the default ACTIF and DEMANDE: a consent that cannot
        // be used then says why (TERMINE, SUPPRIME).
        let body = serde_json::json!({
            "autorisationId": autorisation_id,
            "comptage": false,
            "serviceType": "ACCES",
            "etatCode": ["ACTIF", "DEMANDE", "TERMINE", "SUPPRIME"],
        });
        let endpoint = "subscribed_services/v1";
        let call = Call {
            endpoint: endpoint.to_owned(),
            method: Method::POST,
            path: "/subscribed_services/v1/".to_owned(),
            query: Vec::new(),
            body: Body::Json(body),
        };
        let answer = self.authorized(Auth::App, &call, &tally).await?;
        if !answer.is_success() {
            return Err(UpstreamError::Refused(answer.fault()));
        }
        let scope =
            api2026::parse_services(&answer.body).map_err(|e| UpstreamError::BadResponse {
                endpoint: endpoint.to_owned(),
                status: answer.status,
                problem: e.0,
                excerpt: Some(error::excerpt(&answer.body)),
            })?;
        if let Some(why) = scope.why_unusable() {
            return Err(UpstreamError::ConsentRefused {
                error: "no_active_service".into(),
                description: Some(format!("autorisation {autorisation_id}: {why}")),
            });
        }
        let now = now_seconds();
        let midnight =
            |day| day_start(day).map_err(|e| UpstreamError::BadConsentRequest(e.to_string()));
        let valid_from = match scope.start {
            Some(day) => midnight(day)?,
            None => now,
        };
        let valid_until = match scope.end {
            // Like every Enedis period, a service runs [dateDebut, dateFin[: the
            // consent ends at Paris midnight starting dateFin.
            Some(day) => midnight(day)?,
            None => duration.end_from(now)?,
        };
        if valid_until <= now {
            return Err(UpstreamError::BadConsentRequest(format!(
                "autorisation {autorisation_id}: its services ended on {}",
                scope.end.map(|d| d.to_string()).unwrap_or_default()
            )));
        }
        Ok(NewConsent {
            generation: ApiGeneration::Api2026,
            owner: owner.to_owned(),
            prms: scope.prms,
            autorisation_id: Some(autorisation_id),
            valid_from,
            valid_until,
        })
    }

    /// v3/v4: exchange the code at once, store the consent with its tokens.
    async fn resolve_with_code(
        &self,
        owner: &str,
        callback: &Callback,
        duration: &ConsentDuration,
    ) -> Result<Consent, UpstreamError> {
        let code = callback.code.clone().ok_or_else(|| {
            UpstreamError::BadConsentRequest(format!(
                "the {} callback has no code",
                self.shared.config.api.as_str()
            ))
        })?;
        // In its own task: once Enedis has answered, the code is spent and the tokens
        // exist nowhere else; a caller giving up must not cancel their commit.
        let task = tokio::spawn(exchange_code(
            Arc::clone(&self.shared),
            owner.to_owned(),
            code,
            callback.usage_point_id.clone(),
            duration.clone(),
        ));
        task.await
            .map_err(|e| UpstreamError::Internal(format!("the code exchange task failed: {e}")))?
    }
}

/// v5: the PRMs are in the callback; the application token reads them.
fn consent_v5(
    owner: &str,
    callback: &Callback,
    duration: &ConsentDuration,
) -> Result<NewConsent, UpstreamError> {
    let list = callback.usage_point_id.as_deref().ok_or_else(|| {
        UpstreamError::BadConsentRequest("the v5 callback has no usage_point_id".into())
    })?;
    let now = now_seconds();
    Ok(NewConsent {
        generation: ApiGeneration::V5,
        owner: owner.to_owned(),
        prms: parse_prm_list(list, "usage_point_id")?,
        autorisation_id: None,
        valid_from: now,
        valid_until: duration.end_from(now)?,
    })
}

/// v3/v4: exchange a consent's authorization code for its tokens and store the
/// consent with them, in one durable transaction.
pub(crate) async fn exchange_code(
    shared: Arc<Shared>,
    owner: String,
    code: String,
    callback_prms: Option<String>,
    duration: ConsentDuration,
) -> Result<Consent, UpstreamError> {
    let config = &shared.config;
    let form = vec![
        ("grant_type", "authorization_code".to_owned()),
        ("client_id", config.client_id.clone()),
        ("client_secret", config.client_secret.expose().to_owned()),
        ("code", code),
    ];
    let endpoint = "v1/oauth2/token";
    let granted = token::request_token(
        &shared.http,
        endpoint,
        token::CONSENT_TOKEN_PATH,
        vec![("redirect_uri", config.redirect_uri.clone())],
        form,
        &Tally::new(Ask::peer(&owner, Class::Interactive)),
    )
    .await
    .map_err(|e| match e {
        UpstreamError::Refused(fault) if fault.has_code("invalid_grant") => {
            UpstreamError::ConsentRefused {
                error: "invalid_grant".into(),
                description: Some(format!(
                    "Enedis refused the authorization code (expired or already used): {}",
                    fault.message
                )),
            }
        }
        UpstreamError::Refused(fault) => {
            token::app_credentials_error(UpstreamError::Refused(fault))
        }
        other => other,
    })?;
    let refresh_token =
        granted
            .refresh_token
            .clone()
            .ok_or_else(|| UpstreamError::BadResponse {
                endpoint: endpoint.into(),
                status: 200,
                problem: "the authorization_code answer has no refresh_token".into(),
                excerpt: None,
            })?;
    // The token answer is authoritative on the PRMs; the callback's are a fallback.
    let prms = match (&granted.usage_points, &callback_prms) {
        (Some(list), _) => parse_prm_list(list, "usage_points_id")?,
        (None, Some(list)) => parse_prm_list(list, "usage_point_id")?,
        (None, None) => {
            return Err(UpstreamError::BadConsentRequest(
                "neither the callback nor the token answer names a PRM".into(),
            ));
        }
    };
    let now = now_seconds();
    let new = NewConsent {
        generation: config.api,
        owner,
        prms,
        autorisation_id: None,
        valid_from: now,
        valid_until: duration.end_from(now)?,
    };
    let tokens = TokenSet {
        refresh_token,
        access_token: Some(granted.access_token),
        access_expires_at: Some(now + granted.lifetime.as_secs() as i64),
    };
    Ok(shared
        .store
        .call(move |s| s.add_consent(&new, Some(&tokens)))
        .await?)
}
