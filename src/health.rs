//! `GET /healthz` and `GET /metrics`: an axum [`Router`] to merge into the agent's
//! web server.
//!
//! `/healthz` answers 200 only when every registered [`HealthCheck`] passes (the
//! agent registers two: the store is usable, the XMPP session is up), 503
//! otherwise. The body has one line per check, `name: ok` (`name: ok (note)`
//! when the check has something to add, e.g. why it does not apply) or
//! `name: FAILED: reason`, so that `curl` or a monitoring probe says what is
//! wrong; then one line per fact registered with [`Health::with_info`], `name:
//! value` (the agent's role: `role: leader` or `role: standby`).
//!
//! `/metrics` serves [`Metrics::render`] with the 0.0.4 text content type.
//!
//! Checks are synchronous functions (a store check is a quick blocking SQLite
//! query); each runs on tokio's blocking pool, all at once, with a deadline, so a
//! slow or hung check turns into a failed line rather than a hung probe or a
//! blocked runtime worker.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{self, Metrics};

/// One condition `/healthz` verifies.
pub trait HealthCheck: Send + Sync + 'static {
    /// Short name shown at the start of its line, e.g. `store` or `xmpp`.
    fn name(&self) -> &str;
    /// `Ok` when healthy (with a note to show after `ok`, if any), otherwise
    /// why not (one line; newlines are replaced). May block briefly; it runs on
    /// the blocking pool.
    fn check(&self) -> Result<Option<String>, String>;
}

/// A [`HealthCheck`] from a name and a closure.
pub struct FnCheck<F> {
    name: String,
    f: F,
}

impl<F> HealthCheck for FnCheck<F>
where
    F: Fn() -> Result<Option<String>, String> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> Result<Option<String>, String> {
        (self.f)()
    }
}

/// A check named `name` that calls `f`, e.g.
/// `check_fn("xmpp", move || if m.xmpp_session_up() { Ok(()) } else { Err("session is down".into()) })`.
pub fn check_fn<F>(name: impl Into<String>, f: F) -> Arc<dyn HealthCheck>
where
    F: Fn() -> Result<(), String> + Send + Sync + 'static,
{
    check_fn_noted(name, move || f().map(|()| None))
}

/// A check whose passing may carry a note, shown as `name: ok (note)`.
pub fn check_fn_noted<F>(name: impl Into<String>, f: F) -> Arc<dyn HealthCheck>
where
    F: Fn() -> Result<Option<String>, String> + Send + Sync + 'static,
{
    Arc::new(FnCheck {
        name: name.into(),
        f,
    })
}

/// A fact `/healthz` shows after the checks, as `name: value`; never fails.
type Info = (String, Arc<dyn Fn() -> String + Send + Sync>);

/// Longest time one check may take before it counts as failed.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The state behind the two routes; build it, then call [`Health::router`].
#[derive(Clone)]
pub struct Health {
    metrics: Metrics,
    checks: Arc<[Arc<dyn HealthCheck>]>,
    info: Vec<Info>,
    timeout: Duration,
}

impl Health {
    pub fn new(metrics: Metrics, checks: Vec<Arc<dyn HealthCheck>>) -> Health {
        Health {
            metrics,
            checks: checks.into(),
            info: Vec::new(),
            timeout: DEFAULT_CHECK_TIMEOUT,
        }
    }

    /// Adds a line `name: value` after the checks' (e.g. `role: standby`);
    /// `value` is read on every request and must not block.
    pub fn with_info(
        mut self,
        name: impl Into<String>,
        value: impl Fn() -> String + Send + Sync + 'static,
    ) -> Health {
        self.info.push((name.into(), Arc::new(value)));
        self
    }

    /// Replaces [`DEFAULT_CHECK_TIMEOUT`].
    pub fn with_check_timeout(mut self, timeout: Duration) -> Health {
        self.timeout = timeout;
        self
    }

    /// Runs every check at once and returns whether all passed, with the report
    /// (one line per check, in registration order).
    pub async fn run_checks(&self) -> (bool, String) {
        let runs = self.checks.iter().map(|check| {
            let check = Arc::clone(check);
            let timeout = self.timeout;
            async move {
                let name = check.name().to_owned();
                let task = tokio::task::spawn_blocking(move || check.check());
                let result = match tokio::time::timeout(timeout, task).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(e)) if e.is_panic() => Err("the check panicked".to_owned()),
                    Ok(Err(_)) => Err("the check was cancelled".to_owned()),
                    Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                };
                (name, result)
            }
        });
        let results = futures::future::join_all(runs).await;
        let mut healthy = true;
        let mut report = String::new();
        for (name, result) in results {
            match result {
                Ok(None) => report.push_str(&format!("{name}: ok\n")),
                Ok(Some(note)) => {
                    let note = note.trim().replace(['\r', '\n'], "; ");
                    report.push_str(&format!("{name}: ok ({note})\n"));
                }
                Err(why) => {
                    healthy = false;
                    let why = why.trim().replace(['\r', '\n'], "; ");
                    report.push_str(&format!("{name}: FAILED: {why}\n"));
                }
            }
        }
        for (name, value) in &self.info {
            let value = value().trim().replace(['\r', '\n'], "; ");
            report.push_str(&format!("{name}: {value}\n"));
        }
        (healthy, report)
    }

    /// `GET /healthz` and `GET /metrics` (HEAD too), to merge into the web router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .with_state(self)
    }
}

async fn healthz(State(health): State<Health>) -> Response {
    let (healthy, report) = health.run_checks().await;
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        report,
    )
        .into_response()
}

async fn metrics_text(State(health): State<Health>) -> Response {
    (
        [
            (header::CONTENT_TYPE, metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        health.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Serves `health` on a free loopback port; the server stops with the runtime
    /// at the end of the test.
    async fn serve(health: Health) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, health.router()).await });
        format!("http://{addr}")
    }

    fn store_ok() -> Arc<dyn HealthCheck> {
        check_fn("store", || Ok(()))
    }

    fn xmpp(metrics: &Metrics) -> Arc<dyn HealthCheck> {
        let m = metrics.clone();
        check_fn("xmpp", move || {
            if m.xmpp_session_up() {
                Ok(())
            } else {
                Err("session is down".to_owned())
            }
        })
    }

    #[tokio::test]
    async fn healthz_is_200_only_when_every_check_passes() {
        let metrics = Metrics::new();
        let base = serve(Health::new(
            metrics.clone(),
            vec![store_ok(), xmpp(&metrics)],
        ))
        .await;

        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.unwrap(),
            "store: ok\nxmpp: FAILED: session is down\n"
        );

        metrics.set_xmpp_session_up(true);
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(r.headers()[reqwest::header::CACHE_CONTROL], "no-store");
        assert_eq!(r.text().await.unwrap(), "store: ok\nxmpp: ok\n");
    }

    #[tokio::test]
    async fn a_failing_store_is_reported_on_its_line() {
        let metrics = Metrics::new();
        metrics.set_xmpp_session_up(true);
        let broken = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&broken);
        let store = check_fn("store", move || {
            if flag.load(Ordering::Relaxed) {
                Err("database is locked\n(after 5 s)".to_owned())
            } else {
                Ok(())
            }
        });
        let base = serve(Health::new(metrics.clone(), vec![store, xmpp(&metrics)])).await;

        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.unwrap(),
            "store: FAILED: database is locked; (after 5 s)\nxmpp: ok\n"
        );

        broken.store(false, Ordering::Relaxed);
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
    }

    /// A check that does not apply passes with its note; facts follow the
    /// checks and never fail the probe.
    #[tokio::test]
    async fn notes_and_facts_are_shown_after_ok_and_after_the_checks() {
        let standby = Arc::new(AtomicBool::new(true));
        let role = Arc::clone(&standby);
        let flag = Arc::clone(&standby);
        let xmpp = check_fn_noted("xmpp", move || {
            if flag.load(Ordering::Relaxed) {
                Ok(Some("standby: no session\nby design".to_owned()))
            } else {
                Err("session is down".to_owned())
            }
        });
        let health =
            Health::new(Metrics::new(), vec![store_ok(), xmpp]).with_info("role", move || {
                if role.load(Ordering::Relaxed) {
                    "standby"
                } else {
                    "leader"
                }
                .to_owned()
            });
        let base = serve(health).await;

        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.text().await.unwrap(),
            "store: ok\nxmpp: ok (standby: no session; by design)\nrole: standby\n"
        );
        standby.store(false, Ordering::Relaxed);
        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.unwrap(),
            "store: ok\nxmpp: FAILED: session is down\nrole: leader\n"
        );
    }

    #[tokio::test]
    async fn a_hung_check_fails_without_hanging_the_probe() {
        let hung = check_fn("store", || {
            std::thread::sleep(Duration::from_millis(600));
            Ok(())
        });
        let health = Health::new(Metrics::new(), vec![hung, check_fn("xmpp", || Ok(()))])
            .with_check_timeout(Duration::from_millis(100));
        let base = serve(health).await;

        let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.text().await.unwrap(),
            "store: FAILED: no answer within 100 ms\nxmpp: ok\n"
        );
    }

    #[tokio::test]
    async fn a_panicking_check_fails_and_the_server_keeps_serving() {
        let panics = check_fn("xmpp", || panic!("bug in a check"));
        let base = serve(Health::new(Metrics::new(), vec![store_ok(), panics])).await;

        for _ in 0..2 {
            let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
            assert_eq!(r.status(), 503);
            assert_eq!(
                r.text().await.unwrap(),
                "store: ok\nxmpp: FAILED: the check panicked\n"
            );
        }
    }

    #[tokio::test]
    async fn metrics_serves_the_registry_as_prometheus_text() {
        let metrics = Metrics::new();
        metrics.request("get_history", "ok", Duration::from_millis(12));
        metrics.upstream_call("metering/daily_consumption", Some(200));
        let base = serve(Health::new(metrics.clone(), vec![])).await;

        let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[reqwest::header::CONTENT_TYPE],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        let body = r.text().await.unwrap();
        assert!(body.contains(
            "\nquoalise_agent_requests_total{command=\"get_history\",outcome=\"ok\"} 1\n"
        ));
        assert!(body.contains(
            "\nquoalise_agent_upstream_calls_total{endpoint=\"metering/daily_consumption\",status=\"200\"} 1\n"
        ));

        // Recorded after the first scrape: the next scrape shows it.
        metrics.xmpp_reconnect();
        let body = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.contains("\nquoalise_agent_xmpp_reconnects_total 1\n"));
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        let base = serve(Health::new(Metrics::new(), vec![])).await;
        let client = reqwest::Client::new();
        let r = client.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = client.post(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 405);
        let r = client.head(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}
