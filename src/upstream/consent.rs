//! The consumer side of a consent: the authorize URL we send them to, the duration
//! they are asked for, and the callback Enedis sends them back with.

use std::str::FromStr;

use jiff::civil::Date;
use jiff::{Span, ToSpan};
use url::Url;

use super::error::UpstreamError;
use crate::config::{ApiGeneration, EnedisConfig};
use crate::quoalise::Prm;
use crate::time::{PARIS, paris_today};

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
