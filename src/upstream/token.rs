//! OAuth tokens: one application token (2026, v5) or one token pair per consent (v3,
//! v4), each renewed before it expires and at most once at a time.
//!
//! Single flight: whoever finds the token missing or stale renews it while holding
//! that token's async mutex; everybody else waits on the mutex and then finds the
//! fresh token. A 401 invalidates a token only if it is still the one that was
//! refused, so fifty requests refused together cause one renewal.
//!
//! Per-consent tokens live in the store. A refresh answer carries a NEW refresh
//! token (the old one stops working), so the pair is committed durably before the
//! access token is handed to anybody: if the process dies after the commit, the next
//! run has the new refresh token; if it dies before, the access token was never used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{EnedisFault, UpstreamError};
use super::http::{Body, Call, Http, Shared, Tally};
use super::limiter::Ask;
use crate::config::Secret;
use crate::store::{ConsentState, Store, StoredTokens, TokenSet, now_seconds};

/// Renew this long before expiry at most; less for short-lived tokens.
const RENEW_MARGIN: Duration = Duration::from_secs(60);
/// Assumed lifetime when a token answer has no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

pub(crate) const APP_TOKEN_PATH: &str = "/oauth2/v3/token";
pub(crate) const CONSENT_TOKEN_PATH: &str = "/v1/oauth2/token";

/// A token answer, as far as we need it.
pub(crate) struct Granted {
    pub access_token: Secret,
    pub lifetime: Duration,
    pub refresh_token: Option<Secret>,
    /// v3/v4: the PRMs the consent covers (`usage_points_id`, comma-separated).
    pub usage_points: Option<String>,
}

/// How long before expiry to renew a token of `lifetime`.
fn margin(lifetime: Duration) -> Duration {
    RENEW_MARGIN.min(lifetime / 4)
}

/// Post a token request and read the answer. Error bodies of the token endpoint
/// are read like any Enedis error; a 2xx answer is never quoted (it holds tokens).
pub(crate) async fn request_token(
    http: &Http,
    endpoint: &str,
    path: &str,
    query: Vec<(&'static str, String)>,
    form: Vec<(&'static str, String)>,
    tally: &Tally,
) -> Result<Granted, UpstreamError> {
    let call = Call {
        endpoint: endpoint.to_owned(),
        method: Method::POST,
        path: path.to_owned(),
        query,
        body: Body::Form(form),
    };
    // Every caller waits for a token behind the one asking for it (the token's
    // lock): asked for background work, it would make people wait in the
    // background queue. A token request is always interactive, and the agent's
    // own call: it serves everybody, so no peer's budget pays for it.
    let urgent = Tally::new(Ask {
        deadline: tally.ask().deadline,
        ..Ask::agent()
    });
    let sent = http.send(&call, None, &urgent).await;
    tally.add_n(urgent.get());
    let answer = sent?;
    if !answer.is_success() {
        return Err(UpstreamError::Refused(answer.fault()));
    }
    let json = answer.json(true)?;
    let shape_error = |problem: String| UpstreamError::BadResponse {
        endpoint: endpoint.to_owned(),
        status: answer.status,
        problem,
        excerpt: None,
    };
    let Some(obj) = json.as_object() else {
        return Err(shape_error("the token answer is not a JSON object".into()));
    };
    let fields = || obj.keys().cloned().collect::<Vec<_>>().join(", ");
    let access_token = obj
        .get("access_token")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            shape_error(format!(
                "the token answer has no access_token (fields: {})",
                fields()
            ))
        })?;
    let lifetime = match obj.get("expires_in") {
        None | Some(serde_json::Value::Null) => {
            tracing::warn!(
                endpoint,
                "token answer without expires_in, assuming 10 minutes"
            );
            DEFAULT_LIFETIME
        }
        // `expires_in` may come as a number or as a string ("12600").
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse::<u64>().ok()))
            .map(Duration::from_secs)
            .ok_or_else(|| shape_error(format!("expires_in is {v}, not a number of seconds")))?,
    };
    let text = |name: &str| {
        obj.get(name)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(Granted {
        access_token: Secret::new(access_token),
        lifetime,
        refresh_token: text("refresh_token").map(Secret::new),
        usage_points: text("usage_points_id"),
    })
}

/// The application's token (2026, v5): client_credentials.
pub(crate) struct AppToken {
    slot: Mutex<Slot>,
    /// Failed renewals so far, read before queueing: waiters queued behind a failed
    /// renewal get its error instead of each trying again in turn.
    failures: AtomicU64,
}

#[derive(Default)]
struct Slot {
    token: Option<Cached>,
    last_failure: String,
}

struct Cached {
    token: Secret,
    renew_at: Instant,
}

impl AppToken {
    pub fn new() -> Self {
        AppToken {
            slot: Mutex::new(Slot::default()),
            failures: AtomicU64::new(0),
        }
    }

    /// A valid application token, renewed first if needed.
    pub async fn get(&self, shared: &Shared, tally: &Tally) -> Result<Secret, UpstreamError> {
        let config = &shared.config;
        let failures_before = self.failures.load(Ordering::SeqCst);
        let mut slot = self.slot.lock().await;
        if let Some(cached) = &slot.token
            && Instant::now() < cached.renew_at
        {
            return Ok(cached.token.clone());
        }
        if self.failures.load(Ordering::SeqCst) != failures_before {
            return Err(UpstreamError::Unavailable {
                reason: format!(
                    "the application token could not be obtained: {}",
                    slot.last_failure
                ),
                fault: None,
            });
        }
        let form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", config.client_id.clone()),
            ("client_secret", config.client_secret.expose().to_owned()),
        ];
        match request_token(
            &shared.http,
            "oauth2/v3/token",
            APP_TOKEN_PATH,
            Vec::new(),
            form,
            tally,
        )
        .await
        {
            Ok(granted) => {
                let renew_at = Instant::now() + granted.lifetime - margin(granted.lifetime);
                tracing::info!(
                    lifetime_secs = granted.lifetime.as_secs(),
                    "application token obtained"
                );
                slot.token = Some(Cached {
                    token: granted.access_token.clone(),
                    renew_at,
                });
                Ok(granted.access_token)
            }
            Err(error) => {
                let error = app_credentials_error(error);
                slot.last_failure = error.to_string();
                self.failures.fetch_add(1, Ordering::SeqCst);
                slot.token = None;
                Err(error)
            }
        }
    }

    /// Forget `refused` if it is still the cached token (a 401 came back for it).
    pub async fn invalidate(&self, refused: &Secret) {
        let mut slot = self.slot.lock().await;
        if slot.token.as_ref().is_some_and(|c| &c.token == refused) {
            slot.token = None;
        }
    }
}

/// A refusal of the application's own credentials is not the peer's business: the
/// agent cannot reach Enedis until an operator fixes them.
pub(crate) fn app_credentials_error(error: UpstreamError) -> UpstreamError {
    match error {
        UpstreamError::Refused(fault) => UpstreamError::Unavailable {
            reason: format!(
                "the application token was refused ({fault}); check enedis.client_id and enedis.client_secret"
            ),
            fault: Some(fault),
        },
        other => other,
    }
}

/// Per-consent tokens (v3, v4), kept in the store.
pub(crate) struct ConsentTokens {
    locks: StdMutex<HashMap<i64, Weak<Mutex<()>>>>,
}

impl ConsentTokens {
    pub fn new() -> Self {
        ConsentTokens {
            locks: StdMutex::new(HashMap::new()),
        }
    }

    fn lock_of(&self, consent_id: i64) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(lock) = locks.get(&consent_id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(Mutex::new(()));
        locks.insert(consent_id, Arc::downgrade(&lock));
        lock
    }

    /// A valid access token of consent `consent_id`. The stored one is used unless it
    /// expires soon, is `refused` (a 401 came back for it) or `force` is set; then the
    /// refresh token is used, and the new pair stored durably before returning.
    /// Returns the token and its expiry (UTC seconds).
    ///
    /// The work runs in its own task: a caller that gives up (a timeout, a peer gone)
    /// must not cancel a refresh between Enedis's answer and the commit, which would
    /// lose the new refresh token, and with it the consent.
    pub async fn access_token(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        consent_id: i64,
        refused: Option<&Secret>,
        force: bool,
        tally: &Tally,
    ) -> Result<(Secret, i64), UpstreamError> {
        let this = Arc::clone(self);
        let shared = Arc::clone(shared);
        let refused = refused.cloned();
        let ask = tally.ask().clone();
        let task = tokio::spawn(async move {
            let tally = Tally::new(ask);
            let result = this
                .locked_access_token(&shared, consent_id, refused.as_ref(), force, &tally)
                .await;
            (result, tally.get())
        });
        let (result, calls) = task
            .await
            .map_err(|e| UpstreamError::Internal(format!("the token task failed: {e}")))?;
        tally.add_n(calls);
        result
    }

    async fn locked_access_token(
        &self,
        shared: &Shared,
        consent_id: i64,
        refused: Option<&Secret>,
        force: bool,
        tally: &Tally,
    ) -> Result<(Secret, i64), UpstreamError> {
        let (http, config, store) = (&shared.http, &shared.config, &shared.store);
        let lock = self.lock_of(consent_id);
        let _guard = lock.lock().await;
        let mut force = force;
        let mut rounds = 0;
        // A second round only when another process turned out to have refreshed the
        // pair meanwhile (the admin command line beside the agent).
        let (stored, granted) = loop {
            let stored = load_tokens(store, consent_id).await?;
            let now = now_seconds();
            if !force
                && let (Some(access), Some(expires_at)) =
                    (&stored.tokens.access_token, stored.tokens.access_expires_at)
            {
                let lifetime = Duration::from_secs((expires_at - stored.updated_at).max(0) as u64);
                // Stored instants are whole seconds: round the margin up, at least 1 s.
                let margin = margin(lifetime).as_secs_f64().ceil().max(1.0) as i64;
                let renew_at = expires_at - margin;
                if now < renew_at && refused != Some(access) {
                    return Ok((access.clone(), expires_at));
                }
            }
            let form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", config.client_id.clone()),
                ("client_secret", config.client_secret.expose().to_owned()),
                (
                    "refresh_token",
                    stored.tokens.refresh_token.expose().to_owned(),
                ),
            ];
            match request_token(
                http,
                "v1/oauth2/token",
                CONSENT_TOKEN_PATH,
                vec![("redirect_uri", config.redirect_uri.clone())],
                form,
                tally,
            )
            .await
            {
                Ok(granted) => break (stored, granted),
                Err(UpstreamError::Refused(fault)) if refresh_token_dead(&fault) => {
                    let now_stored = load_tokens(store, consent_id).await?;
                    rounds += 1;
                    if rounds < 3 && now_stored.tokens.refresh_token != stored.tokens.refresh_token
                    {
                        tracing::info!(
                            consent_id,
                            "consent tokens were renewed by another process"
                        );
                        force = false;
                        continue;
                    }
                    // The refresh token is dead: so is the consent. Say so in the store,
                    // so another consent covering the PRM is used from now on.
                    tracing::warn!(consent_id, code = ?fault.code, "refresh token refused, consent expired");
                    store
                        .call(move |s| s.set_consent_state(consent_id, ConsentState::Expired))
                        .await?;
                    return Err(UpstreamError::NotAuthorized(format!(
                        "Enedis refused the refresh token of consent {consent_id} ({fault}): the consumer must consent again"
                    )));
                }
                Err(UpstreamError::Refused(fault)) => {
                    return Err(app_credentials_error(UpstreamError::Refused(fault)));
                }
                Err(other) => return Err(other),
            }
        };
        let expires_at = now_seconds() + granted.lifetime.as_secs() as i64;
        let tokens = TokenSet {
            // Enedis may keep the refresh token as is, then it does not send it again.
            refresh_token: granted
                .refresh_token
                .clone()
                .unwrap_or_else(|| stored.tokens.refresh_token.clone()),
            access_token: Some(granted.access_token.clone()),
            access_expires_at: Some(expires_at),
        };
        // Durable before use: this commit is fsynced (synchronous=FULL).
        if let Err(e) = store
            .call(move |s| s.save_tokens(consent_id, &tokens))
            .await
        {
            tracing::error!(
                consent_id,
                error = %e,
                "a refreshed token pair could not be stored: the consent may be lost"
            );
            return Err(e.into());
        }
        tracing::debug!(consent_id, "consent tokens refreshed and stored");
        Ok((granted.access_token, expires_at))
    }
}

async fn load_tokens(store: &Store, consent_id: i64) -> Result<StoredTokens, UpstreamError> {
    store
        .call(move |s| s.tokens(consent_id))
        .await?
        .ok_or_else(|| {
            UpstreamError::NotAuthorized(format!(
                "consent {consent_id} has no refresh token: the consumer must consent again (or an operator import one)"
            ))
        })
}

/// Whether a refusal of a refresh token means it will never work again.
fn refresh_token_dead(fault: &EnedisFault) -> bool {
    fault.has_code("invalid_grant") || fault.has_code("ADAM-DC-0008")
}
