//! SOAP 1.1 over mutual TLS to SGE: settings, the HTTP client presenting the
//! application's certificate, the quota every call waits in, retries, and the
//! errors a call can end with.
//!
//! Every call takes a slot of the [`QuotaLimiter`] it was given (SGE's own: its
//! homologation allows one call a second) under the caller's [`Ask`](crate::upstream::Ask),
//! then POSTs the envelope with `Content-Type: text/xml; charset=utf-8` and the
//! service's `SOAPAction` (`""`, except ConsultationMesuresDetaillees v3.0). An
//! answer carrying a SOAP fault becomes an [`SgeFault`]: a functional refusal
//! (every SGT code but the technical SGT500 and SGT506, see [`SgeFault::kind`])
//! is not retried; a technical fault (or one without code from `soap:Server`), a
//! 5xx without a fault, a timeout or a failed connection is retried once after a
//! short pause, as `upstream::http` does.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::soap::{self, Envelope};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::upstream::error::{EnedisFault, UpstreamError};
use crate::upstream::http::Tally;
use crate::upstream::limiter::QuotaLimiter;

/// Largest answer read: a week of 5-minute curve is about 200 KB.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// Pause before each retry of a technical failure.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// A technical failure is retried this many times.
/// The SGT codes of a failure of Enedis itself (AX.0466 v1.5.0).
const TECHNICAL_CODES: [&str; 2] = ["SGT500", "SGT506"];

/// How to reach SGE and who the agent is there.
#[derive(Clone)]
pub struct SgeSettings {
    /// The services' root, e.g. `https://sge-ws.enedis.fr/` (production) or
    /// `https://sge-homologation-ws.enedis.fr/`; service paths are appended.
    pub endpoint: Url,
    /// The application's client certificate (PEM, with its chain if any).
    pub certificate_pem: Vec<u8>,
    /// The certificate's private key (PEM). Never printed.
    pub key_pem: Secret,
    /// Roots trusted besides the system's (PEM, one or more certificates):
    /// a test CA; `None` in production.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The SGE login (`initiateurLogin`, `loginUtilisateur`): an e-mail address
    /// or an NNI.
    pub login: String,
    /// The requester's contract with Enedis (`contratId` of the orders).
    pub contract_id: String,
    /// Longest time for one HTTP exchange (connection, handshake, answer).
    pub timeout: Duration,
    /// Longest wait for a quota slot when the caller's [`Ask`](crate::upstream::Ask)
    /// has no deadline of its own.
    pub quota_wait: Duration,
    /// Retries of a technical failure (SGT500, SGT506, no answer) before it is
    /// said unavailable (`sge.max_retries`, default 1).
    pub max_retries: u32,
}

impl SgeSettings {
    /// The settings of `[sge]`: its certificate, key and extra root read from
    /// their files (the key was read with the configuration, as a secret).
    pub fn from_config(
        config: &crate::config::SgeConfig,
        quota_wait: Duration,
    ) -> Result<SgeSettings, SgeError> {
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                SgeError::Config(format!(
                    "sge.{what} {}: cannot read it: {e}",
                    path.display()
                ))
            })
        };
        let endpoint = Url::parse(&config.endpoint)
            .map_err(|e| SgeError::Config(format!("sge.endpoint: {e}")))?;
        Ok(SgeSettings {
            endpoint,
            certificate_pem: read("certificate_file", &config.certificate_file)?,
            key_pem: config.key.clone(),
            extra_roots_pem: match &config.ca_file {
                Some(path) => Some(read("ca_file", path)?),
                None => None,
            },
            login: config.login.clone(),
            contract_id: config.contract_id.clone(),
            timeout: Duration::from_secs(config.request_timeout_secs),
            quota_wait,
            max_retries: config.max_retries,
        })
    }
}

impl std::fmt::Debug for SgeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgeSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field(
                "certificate_pem",
                &format_args!("{} bytes", self.certificate_pem.len()),
            )
            .field("key_pem", &self.key_pem)
            .field(
                "extra_roots_pem",
                &self
                    .extra_roots_pem
                    .as_ref()
                    .map(|r| format!("{} bytes", r.len())),
            )
            .field("login", &self.login)
            .field("contract_id", &self.contract_id)
            .field("timeout", &self.timeout)
            .field("quota_wait", &self.quota_wait)
            .finish()
    }
}

/// The SGE services the agent calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `ConsultationMesuresDetaillees/v3.0`.
    Measures,
    /// `ConsultationDonneesTechniquesContractuelles/v1.0`.
    TechnicalData,
    /// `CommandeServicesAccesDonnees/v1.0`.
    OrderAccess,
    /// `CommandeArretServicesAccesDonnees/v1.0`.
    StopAccess,
}

impl Service {
    /// The path below the endpoint (WSDL `soap:address`), also the name in logs,
    /// metrics and errors.
    pub fn path(self) -> &'static str {
        match self {
            Service::Measures => "ConsultationMesuresDetaillees/v3.0",
            Service::TechnicalData => "ConsultationDonneesTechniquesContractuelles/v1.0",
            Service::OrderAccess => "CommandeServicesAccesDonnees/v1.0",
            Service::StopAccess => "CommandeArretServicesAccesDonnees/v1.0",
        }
    }

    /// The WSDL's `soapAction`.
    pub fn soap_action(self) -> &'static str {
        match self {
            Service::Measures => {
                "http://www.enedis.fr/sge/b2b/services/consultationmesuresdetaillees/v3.0"
            }
            _ => "",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// Whether a fault is worth a retry ([`SgeFault::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The request cannot be served as asked (consent, point, dates, direction…):
    /// not retried.
    Functional,
    /// Enedis failed: retried once, then [`UpstreamError::Unavailable`].
    Technical,
}

/// A SOAP fault from SGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgeFault {
    pub service: Service,
    /// The HTTP status it came with (500 for Enedis' faults).
    pub status: u16,
    /// `SGT4K2`…, from `detail/erreur/resultat@code`; `None` when the fault has none.
    pub code: Option<String>,
    /// Enedis' label of the code (`resultat`'s text), else the `faultstring`.
    pub message: String,
    /// `Server` or `Client` (`faultcode` without its prefix).
    pub faultcode: String,
}

impl SgeFault {
    fn from_soap(service: Service, status: u16, fault: soap::Fault) -> SgeFault {
        let message = match (&fault.label, fault.faultstring.is_empty()) {
            (Some(label), _) => label.clone(),
            (None, false) => fault.faultstring.clone(),
            (None, true) => "a SOAP fault without message".to_owned(),
        };
        SgeFault {
            service,
            status,
            code: fault.code,
            message,
            faultcode: fault.faultcode,
        }
    }

    /// Technical: `SGT500` ("Une erreur technique est survenue"), `SGT506` ("le
    /// service est momentanément indisponible"), or a `soap:Server` fault without
    /// a code. Every other code is functional, `SGT5xx` included: GUI.0466 calls
    /// the 5xx family technical, but the return-code annex (AX.0466 v1.5.0) puts
    /// refusals there too (SGT562 malformed, SGT566 consent, SGT570 already
    /// active, SGT583 wrong direction…), which a retry cannot change.
    pub fn kind(&self) -> FaultKind {
        match self.code.as_deref() {
            Some(code) if TECHNICAL_CODES.iter().any(|t| code.eq_ignore_ascii_case(t)) => {
                FaultKind::Technical
            }
            Some(_) => FaultKind::Functional,
            None if self.faultcode == "Client" => FaultKind::Functional,
            None => FaultKind::Technical,
        }
    }

    /// Whether the code is `code` (case-insensitive).
    pub fn has_code(&self, code: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(code))
    }

    /// `SGT4G3`: no measurement over the period (an empty answer, not an error).
    pub fn is_no_data(&self) -> bool {
        self.has_code("SGT4G3")
    }

    /// As the rest of the upstream describes an Enedis answer.
    pub fn to_enedis(&self) -> EnedisFault {
        EnedisFault {
            endpoint: self.service.path().to_owned(),
            status: self.status,
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }
}

impl std::fmt::Display for SgeFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} answered", self.service)?;
        match &self.code {
            Some(code) => write!(f, " {code}")?,
            None => write!(f, " a {} fault", self.faultcode)?,
        }
        write!(f, ": {}", self.message)
    }
}

/// Why an SGE call gave no usable answer. Messages never hold the key, and
/// never a URL (its path is the service, which is named).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SgeError {
    /// A SOAP fault: functional, or technical after the retry.
    #[error("{0}")]
    Fault(SgeFault),
    /// No answer: connection refused, TLS handshake refused, timeout…
    #[error("SGE {service}: {reason} ({attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Transport {
        service: Service,
        reason: String,
        attempts: u32,
        /// The TLS handshake was refused (a certificate refused by either side,
        /// an alert): not retried, a configuration matter.
        handshake: bool,
    },
    /// An HTTP error status without a SOAP fault (a proxy's page, a 404…).
    #[error("SGE {service} answered HTTP {status} without a SOAP fault: {excerpt}")]
    Status {
        service: Service,
        status: u16,
        excerpt: String,
    },
    /// A 2xx answer that is not the expected SOAP document.
    #[error("unreadable answer from SGE {service}: {problem}")]
    BadResponse { service: Service, problem: String },
    /// The quota leaves no slot before the caller's deadline.
    #[error(
        "SGE quota: no call slot for {service} within the request's deadline ({limit}; next slot in {next_slot_secs} s)"
    )]
    Quota {
        service: Service,
        /// [`crate::upstream::Limit::as_str`].
        limit: &'static str,
        next_slot_secs: u64,
        retry_at: Option<jiff::Timestamp>,
    },
    /// The settings cannot make a client (an unreadable certificate, say).
    #[error("SGE configuration: {0}")]
    Config(String),
    /// A request that cannot be written as asked (an empty name, say).
    #[error("{0}")]
    BadRequest(String),
}

impl SgeError {
    /// The SGT code behind the error, if any.
    pub fn sgt_code(&self) -> Option<&str> {
        match self {
            SgeError::Fault(fault) => fault.code.as_deref(),
            _ => None,
        }
    }

    fn is_retryable(&self) -> bool {
        match self {
            SgeError::Fault(fault) => fault.kind() == FaultKind::Technical,
            SgeError::Transport { handshake, .. } => !handshake,
            SgeError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// How the rest of the agent sees an SGE error: a functional fault is a
/// refusal ([`UpstreamError::Refused`], `EnedisFault.code` = the SGT code,
/// `endpoint` = the service path, `status` = the HTTP status), a technical one
/// or a transport failure is [`UpstreamError::Unavailable`], the quota
/// [`UpstreamError::Quota`], an unreadable answer [`UpstreamError::BadResponse`].
impl From<SgeError> for UpstreamError {
    fn from(error: SgeError) -> UpstreamError {
        match error {
            SgeError::Fault(fault) => match fault.kind() {
                FaultKind::Functional => UpstreamError::Refused(fault.to_enedis()),
                FaultKind::Technical => UpstreamError::Unavailable {
                    reason: fault.to_string(),
                    fault: Some(fault.to_enedis()),
                },
            },
            e @ SgeError::Transport { .. } => UpstreamError::Unavailable {
                reason: e.to_string(),
                fault: None,
            },
            SgeError::Status {
                service,
                status,
                ref excerpt,
            } => UpstreamError::Unavailable {
                reason: error.to_string(),
                fault: Some(EnedisFault {
                    endpoint: service.path().to_owned(),
                    status,
                    code: None,
                    message: excerpt.clone(),
                }),
            },
            SgeError::BadResponse { service, problem } => UpstreamError::BadResponse {
                endpoint: service.path().to_owned(),
                status: 200,
                problem,
                excerpt: None,
            },
            e @ SgeError::Quota {
                limit, retry_at, ..
            } => UpstreamError::Quota {
                detail: e.to_string(),
                retry_at,
                limit,
            },
            SgeError::Config(s) => UpstreamError::Config(s),
            SgeError::BadRequest(s) => UpstreamError::BadWindow(s),
        }
    }
}

/// The mutual-TLS SOAP client of one SGE application.
pub struct SgeTransport {
    client: reqwest::Client,
    endpoint: Url,
    limiter: Arc<QuotaLimiter>,
    quota_wait: Duration,
    max_retries: u32,
    metrics: Option<Metrics>,
}

impl std::fmt::Debug for SgeTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SgeTransport")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl SgeTransport {
    /// A client presenting `settings`' certificate, waiting in `limiter`.
    pub fn new(
        settings: &SgeSettings,
        limiter: Arc<QuotaLimiter>,
    ) -> Result<SgeTransport, SgeError> {
        if !matches!(settings.endpoint.scheme(), "https" | "http") {
            return Err(SgeError::Config(format!(
                "the SGE endpoint must be https, not {:?}",
                settings.endpoint.scheme()
            )));
        }
        let mut pem = settings.certificate_pem.clone();
        if !pem.ends_with(b"\n") {
            pem.push(b'\n');
        }
        pem.extend_from_slice(settings.key_pem.expose().as_bytes());
        // reqwest's error would not quote the key, but say nothing of it anyway.
        let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
            SgeError::Config(
                "the client certificate and key are not a PEM certificate followed by its PEM private key (PKCS#8, PKCS#1 or SEC1)"
                    .to_owned(),
            )
        })?;
        drop(pem);
        let mut builder = reqwest::Client::builder()
            .identity(identity)
            .timeout(settings.timeout.max(Duration::from_secs(1)))
            .connect_timeout(settings.timeout.max(Duration::from_secs(1)))
            .user_agent(concat!("quoalise-agent/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(roots) = &settings.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(roots).map_err(|e| {
                SgeError::Config(format!("the extra SGE roots are not PEM certificates: {e}"))
            })?;
            if roots.is_empty() {
                return Err(SgeError::Config(
                    "the extra SGE roots hold no PEM certificate".to_owned(),
                ));
            }
            builder = builder.tls_certs_merge(roots);
        }
        let client = builder.build().map_err(|e| {
            SgeError::Config(format!("cannot build the SGE HTTPS client: {}", chain(&e)))
        })?;
        let mut endpoint = settings.endpoint.clone();
        if !endpoint.path().ends_with('/') {
            endpoint.set_path(&format!("{}/", endpoint.path()));
        }
        Ok(SgeTransport {
            client,
            endpoint,
            limiter,
            quota_wait: settings.quota_wait,
            max_retries: settings.max_retries,
            metrics: None,
        })
    }

    /// The quota scheduler every call waits in.
    pub fn limiter(&self) -> &Arc<QuotaLimiter> {
        &self.limiter
    }

    /// Count every call and quota wait in `metrics` (`/metrics`).
    pub fn with_metrics(mut self, metrics: Metrics) -> SgeTransport {
        self.metrics = Some(metrics);
        self
    }

    /// POST `payload` (the body's element) to `service` and return the answer's
    /// envelope; a fault, an error status or no answer is an error (see the
    /// module doc for what is retried). Each HTTP request is counted in `tally`.
    pub async fn call(
        &self,
        service: Service,
        payload: &str,
        tally: &Tally,
    ) -> Result<Envelope, SgeError> {
        let body = soap::envelope(payload);
        let ask = tally.ask();
        let longest = Instant::now() + self.quota_wait;
        let deadline = ask.deadline.map_or(longest, |d| d.min(longest));
        let mut failures = 0u32;
        loop {
            let asked = Instant::now();
            let slot = self.limiter.acquire(ask, deadline).await;
            let waited = asked.elapsed();
            if let Some(metrics) = &self.metrics {
                if waited >= Duration::from_millis(1) || slot.is_err() {
                    metrics.quota_wait(waited);
                }
                match &slot {
                    Ok(()) => metrics.peer_call(ask.peer_name(), ask.class.as_str(), waited),
                    Err(e) => metrics.peer_refused(ask.peer_name(), e.limit.as_str()),
                }
            }
            if let Err(e) = slot {
                return Err(SgeError::Quota {
                    service,
                    limit: e.limit.as_str(),
                    next_slot_secs: e.next_slot_in.as_secs_f64().ceil() as u64,
                    retry_at: (!e.next_slot_in.is_zero()).then(|| in_from_now(e.next_slot_in)),
                });
            }
            tally.add();
            let outcome = self.once(service, &body, failures + 1).await;
            if let Some(metrics) = &self.metrics {
                let status = match &outcome {
                    Ok(_) => Some(200),
                    Err(SgeError::Fault(f)) => Some(f.status),
                    Err(SgeError::Status { status, .. }) => Some(*status),
                    Err(_) => None,
                };
                metrics.upstream_call(service.path(), status);
            }
            match outcome {
                Ok(envelope) => {
                    self.limiter.succeeded();
                    return Ok(envelope);
                }
                Err(e) if e.is_retryable() && failures < self.max_retries => {
                    failures += 1;
                    tracing::warn!(
                        service = service.path(),
                        attempt = failures,
                        cause = %e,
                        "SGE call failed, retrying"
                    );
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt (`attempt` is 1-based, for messages).
    async fn once(&self, service: Service, body: &str, attempt: u32) -> Result<Envelope, SgeError> {
        let url = self.endpoint.join(service.path()).map_err(|e| {
            SgeError::Config(format!("the SGE endpoint cannot take {service}: {e}"))
        })?;
        let transport = |(reason, handshake): (String, bool)| SgeError::Transport {
            service,
            reason,
            attempts: attempt,
            handshake,
        };
        let mut response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{}\"", service.soap_action()))
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| transport(describe(&e)))?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if answer.len() + chunk.len() > MAX_BODY {
                        return Err(transport((
                            format!("the answer is larger than {} MiB", MAX_BODY / 1024 / 1024),
                            false,
                        )));
                    }
                    answer.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(transport(describe(&e))),
            }
        }
        tracing::debug!(
            service = service.path(),
            status,
            bytes = answer.len(),
            "SGE answer"
        );
        let envelope = soap::read_envelope(&answer);
        if let Ok(envelope) = &envelope
            && let Some(fault) = soap::fault(envelope)
        {
            return Err(SgeError::Fault(SgeFault::from_soap(service, status, fault)));
        }
        if !(200..300).contains(&status) {
            return Err(SgeError::Status {
                service,
                status,
                excerpt: crate::upstream::error::excerpt(&answer),
            });
        }
        envelope.map_err(|problem| SgeError::BadResponse { service, problem })
    }
}

/// A transport error with its causes (rustls says why a handshake failed), without
/// its URL; and whether it is a refused TLS handshake.
fn describe(error: &reqwest::Error) -> (String, bool) {
    let causes = chain(error);
    let lower = causes.to_ascii_lowercase();
    if lower.contains("alert") || lower.contains("certificate") || lower.contains("handshake") {
        let reason = format!(
            "the TLS handshake was refused ({causes}); check the client certificate and key, and the roots trusted for the server"
        );
        return (reason, true);
    }
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect (TCP or TLS handshake)"
    } else if error.is_body() {
        "the answer was cut"
    } else {
        "request failed"
    };
    if causes.is_empty() {
        (kind.to_owned(), false)
    } else {
        (format!("{kind}: {causes}"), false)
    }
}

/// The error's sources, joined; without the URL reqwest puts in its own text.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = cause.source();
    }
    causes.join(": ")
}

fn in_from_now(wait: Duration) -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::SignedDuration::try_from(wait)
        .ok()
        .and_then(|wait| now.checked_add(wait).ok())
        .unwrap_or(now)
}
