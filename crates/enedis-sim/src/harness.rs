//! Test harness for the Enedis simulator: starts one on 127.0.0.1 (port 0) from
//! the same command line as the `enedis-sim` binary, serving real HTTP on its own
//! thread and tokio runtime inside the test process, and stops it on Drop (graceful
//! shutdown, then every connection dropped after 5 s), also when the test fails.
//! Its log (debug for the simulator) goes to a temporary file that is printed when
//! the test panics; `ENEDIS_SIM_LOG` replaces the filter.
//!
//! In-process rather than a child process because the binary of one package is not
//! built for another package's tests; the `binary` module of the crate's tests
//! covers the executable itself.
//! Use from any integration test (with the `harness` feature):
//! ```ignore
//! use enedis_sim::harness::Sim;
//! let sim = Sim::start(&["--today", "2026-10-04"]);
//! let token = sim.app_token().await;
//! sim.admin().faults(serde_json::json!({"failure_rate": 1.0})).await;
//! assert_eq!(sim.admin().call_count("GET /mesure_synchrone_auto/v2/consommation_quotidienne").await, 1);
//! ```
//! [`Sim::start_sge`] also starts the SGE mutual-TLS listener, its test CA and
//! certificates in a temporary directory; [`Sim::sge_http`] presents the agent's
//! certificate, [`Sim::sge_client`] any other (or none).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::cli::Args;

/// Default application credentials of the simulator.
pub const CLIENT_ID: &str = crate::options::DEFAULT_CLIENT_ID;
pub const CLIENT_SECRET: &str = crate::options::DEFAULT_CLIENT_SECRET;

/// How long a graceful stop may take before every connection is dropped.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running simulator.
pub struct Sim {
    server: Option<Server>,
    pub addr: SocketAddr,
    base: String,
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
    client_id: String,
    client_secret: String,
    sge: Option<SgeEnd>,
}

/// The SGE mutual-TLS listener of a simulator.
struct SgeEnd {
    base: String,
    material: crate::sge_tls::Material,
    http: reqwest::Client,
    /// Owns the directory when the harness chose it.
    _dir: Option<tempfile::TempDir>,
}

/// The simulator's thread and the switches that stop it.
struct Server {
    graceful: oneshot::Sender<()>,
    kill: oneshot::Sender<()>,
    stopped: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

fn arg_value(args: &[&str], name: &str) -> Option<String> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .map(|s| (*s).to_owned())
}

impl Sim {
    /// Start `enedis-sim --listen 127.0.0.1:0 ARGS…` and return once it listens.
    pub fn start(args: &[&str]) -> Sim {
        let argv = ["enedis-sim", "--listen", "127.0.0.1:0"]
            .into_iter()
            .chain(args.iter().copied());
        Self::start_argv(argv.collect(), None)
    }

    /// As [`Sim::start`], also serving SGE over mutual TLS on 127.0.0.1 (port 0),
    /// its test CA and certificates generated in a temporary directory (unless
    /// ARGS name one with `--sge-tls-dir`).
    pub fn start_sge(args: &[&str]) -> Sim {
        let dir = (arg_value(args, "--sge-tls-dir").is_none())
            .then(|| tempfile::tempdir().expect("temporary directory for the SGE certificates"));
        let dir_arg = dir
            .as_ref()
            .map(|d| d.path().to_str().expect("UTF-8 temp path").to_owned());
        let mut argv = vec![
            "enedis-sim",
            "--listen",
            "127.0.0.1:0",
            "--sge-listen",
            "127.0.0.1:0",
        ];
        if let Some(d) = &dir_arg {
            argv.extend(["--sge-tls-dir", d.as_str()]);
        }
        argv.extend(args.iter().copied());
        Self::start_argv(argv, dir)
    }

    fn start_argv(argv: Vec<&str>, sge_dir: Option<tempfile::TempDir>) -> Sim {
        let args = &argv[3..];
        let parsed = Args::try_parse_from(&argv).map_err(|e| e.to_string());
        let (listen, sge, options) = match parsed.and_then(|a| {
            let sge = a.sge_listen.zip(a.sge_tls_dir.clone());
            Ok((a.listen, sge, a.options()?))
        }) {
            Ok(started) => started,
            Err(e) => panic!("enedis-sim did not start: {args:?}: {e}"),
        };
        let sge = sge.map(|(sge_listen, dir)| {
            let material = crate::sge_tls::prepare(&dir).unwrap_or_else(|e| {
                panic!("enedis-sim: SGE certificates in {}: {e:#}", dir.display())
            });
            let tls = crate::sge_tls::server_config(&material)
                .unwrap_or_else(|e| panic!("enedis-sim: SGE TLS configuration: {e:#}"));
            let listener =
                std::net::TcpListener::bind(sge_listen).expect("enedis-sim: bind the SGE listener");
            listener
                .set_nonblocking(true)
                .expect("enedis-sim: non-blocking listener");
            let sge_addr = listener
                .local_addr()
                .expect("enedis-sim: SGE bound address");
            ((material, sge_addr), (tls, listener))
        });
        let (sge, sge_listener) = sge.unzip();
        let listener = std::net::TcpListener::bind(listen).expect("enedis-sim: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("enedis-sim: non-blocking listener");
        let addr = listener.local_addr().expect("enedis-sim: bound address");
        let log = tempfile::NamedTempFile::new().expect("temp file for the simulator log");
        let file = log.reopen().expect("reopen the log file");
        let filter =
            std::env::var("ENEDIS_SIM_LOG").unwrap_or_else(|_| "info,enedis_sim=debug".to_owned());
        let (graceful, graceful_rx) = oneshot::channel::<()>();
        let (kill, kill_rx) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("enedis-sim {addr}"))
            .spawn(move || {
                // This thread's own subscriber: the test's global one (if any) does
                // not see the simulator, and the log file sees only the simulator.
                let subscriber = tracing_subscriber::fmt()
                    .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .finish();
                let _log = tracing::subscriber::set_default(subscriber);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("enedis-sim: tokio runtime");
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot serve");
                            return;
                        }
                    };
                    let sge = match sge_listener.map(|(tls, l)| {
                        tokio::net::TcpListener::from_std(l)
                            .map(|listener| crate::router::SgeListener { listener, tls })
                    }) {
                        None => None,
                        Some(Ok(sge)) => Some(sge),
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "cannot serve SGE");
                            return;
                        }
                    };
                    tracing::info!(%addr, client_id = %options.client_id, today = ?options.today, "enedis-sim started");
                    let serve = crate::router::serve_with_sge(listener, sge, options, async move {
                        let _ = graceful_rx.await;
                        tracing::info!("shutting down");
                    });
                    tokio::select! {
                        served = serve => match served {
                            Ok(()) => tracing::info!("stopped"),
                            Err(e) => tracing::error!(error = %e, "server failed"),
                        },
                        _ = kill_rx => tracing::info!("killed: connections still open after the grace period"),
                    }
                });
                // Dropping the runtime drops every connection task still alive.
                drop(runtime);
                let _ = stopped_tx.send(());
            })
            .expect("enedis-sim: spawn its thread");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let sge = sge.map(|(material, sge_addr)| {
            let http = sge_client(
                &material,
                Some((&material.agent_cert(), &material.agent_key())),
            );
            SgeEnd {
                base: format!("https://{sge_addr}"),
                material,
                http,
                _dir: sge_dir,
            }
        });
        Sim {
            server: Some(Server {
                graceful,
                kill,
                stopped,
                thread,
            }),
            addr,
            base: format!("http://{addr}"),
            log,
            http,
            client_id: arg_value(args, "--client-id").unwrap_or_else(|| CLIENT_ID.to_owned()),
            client_secret: arg_value(args, "--client-secret")
                .unwrap_or_else(|| CLIENT_SECRET.to_owned()),
            sge,
        }
    }

    fn sge_end(&self) -> &SgeEnd {
        self.sge
            .as_ref()
            .expect("no SGE listener: start the simulator with Sim::start_sge")
    }

    /// `https://127.0.0.1:PORT` + `path` on the SGE mutual-TLS listener.
    pub fn sge_url(&self, path: &str) -> String {
        format!("{}{}", self.sge_end().base, path)
    }

    /// The directory of the SGE test CA and certificates (`ca.pem`, `agent.pem`…).
    pub fn sge_tls_dir(&self) -> &Path {
        &self.sge_end().material.dir
    }

    /// An HTTPS client trusting only the test CA and presenting the agent's
    /// certificate: what the agent would use.
    pub fn sge_http(&self) -> &reqwest::Client {
        &self.sge_end().http
    }

    /// An HTTPS client trusting only the test CA, presenting `identity`
    /// (certificate and key PEM files) or no certificate at all.
    pub fn sge_client(&self, identity: Option<(&Path, &Path)>) -> reqwest::Client {
        sge_client(&self.sge_end().material, identity)
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Base URL + `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.base, path_and_query)
    }

    /// An HTTP client that does not follow redirects.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The simulator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The admin client (`/sim/admin/`).
    pub fn admin(&self) -> Admin {
        Admin {
            http: self.http.clone(),
            base: self.base.clone(),
        }
    }

    /// An application token (`client_credentials`, v5/2026).
    pub async fn app_token(&self) -> String {
        let response = self
            .http
            .post(self.url("/oauth2/v3/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 200, "application token");
        let body: Value = response.json().await.expect("token JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// GET with a bearer token.
    pub async fn get(&self, token: &str, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(self.url(path_and_query))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// GET with a bearer token; returns status and body parsed as JSON.
    pub async fn get_json(&self, token: &str, path_and_query: &str) -> (u16, Value) {
        let response = self.get(token, path_and_query).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path_and_query}: not JSON ({e}): {text}"));
        (status, body)
    }

    /// Complete a v2 (2026) consent with `sim_auto=accept`; returns `autorisation_id`.
    /// Needs `--redirect-uri`.
    pub async fn consent_v2(&self, state: &str, prms: Option<&str>) -> u64 {
        let mut query = vec![
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("state", state),
            ("duration", "P1Y"),
            ("sim_auto", "accept"),
        ];
        if let Some(p) = prms {
            query.push(("sim_prm", p));
        }
        let response = self
            .http
            .get(self.url("/dataconnect/v2/oauth2/authorize"))
            .query(&query)
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 302, "consent v2");
        let location = response.headers()["location"].to_str().expect("location");
        let url = url::Url::parse(location).expect("redirect URL");
        url.query_pairs()
            .find(|(k, _)| k == "autorisation_id")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("no autorisation_id in {location}"))
    }

    /// Complete a v1 consent with `sim_auto=accept` and exchange the code; returns
    /// the token response (access_token, refresh_token, usage_points_id…).
    /// Uses the registered redirect URI when there is one.
    pub async fn consent_v1_tokens(&self, state: &str, prms: Option<&str>) -> Value {
        let config = self.admin().get("config").await;
        let redirect = config["redirect_uri"]
            .as_str()
            .unwrap_or("http://127.0.0.1:1/callback")
            .to_owned();
        let redirect = redirect.as_str();
        let mut query = vec![
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("state", state),
            ("duration", "P1Y"),
            ("redirect_uri", redirect),
            ("sim_auto", "accept"),
        ];
        if let Some(p) = prms {
            query.push(("sim_prm", p));
        }
        let response = self
            .http
            .get(self.url("/dataconnect/v1/oauth2/authorize"))
            .query(&query)
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 302, "consent v1");
        let location = response.headers()["location"].to_str().expect("location");
        let url = url::Url::parse(location).expect("redirect URL");
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no code in {location}"));
        let response = self
            .http
            .post(self.url("/v1/oauth2/token"))
            .query(&[("redirect_uri", redirect)])
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
                ("code", code.as_str()),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(response.status(), 200, "code exchange");
        response.json().await.expect("token JSON")
    }

    /// Stop the simulator now: it stops listening, finishes the requests under
    /// way, and after 5 s drops the connections still open. Returns once it is gone.
    pub fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let _ = server.graceful.send(());
        if server.stopped.recv_timeout(STOP_GRACE).is_err() {
            let _ = server.kill.send(());
        }
        let _ = server.thread.join();
    }
}

fn sge_client(
    material: &crate::sge_tls::Material,
    identity: Option<(&Path, &Path)>,
) -> reqwest::Client {
    let ca = std::fs::read(material.ca_cert()).expect("read the SGE test CA");
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("the SGE test CA")])
        .timeout(Duration::from_secs(60));
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).expect("read the client certificate");
        pem.extend(std::fs::read(key).expect("read the client key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("client identity"));
    }
    builder.build().expect("HTTPS client")
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- enedis-sim log ({}) ---\n{}", self.base, self.log());
        }
    }
}

/// Client of `/sim/admin/`.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Value {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
        }
    }

    /// GET `/sim/admin/<what>`.
    pub async fn get(&self, what: &str) -> Value {
        self.send(
            self.http.get(format!("{}/sim/admin/{what}", self.base)),
            what,
        )
        .await
    }

    /// POST JSON to `/sim/admin/<what>` (must succeed).
    pub async fn post(&self, what: &str, body: Value) -> Value {
        self.send(
            self.http
                .post(format!("{}/sim/admin/{what}", self.base))
                .json(&body),
            what,
        )
        .await
    }

    /// POST JSON to `/sim/admin/<what>`, returning status and body (may fail).
    pub async fn try_post(&self, what: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/sim/admin/{what}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("admin POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Replace the fault switches (see docs/enedis-sim.md).
    pub async fn faults(&self, faults: Value) -> Value {
        self.post("faults", faults).await
    }

    pub async fn clear_faults(&self) {
        self.send(
            self.http.delete(format!("{}/sim/admin/faults", self.base)),
            "clear faults",
        )
        .await;
    }

    /// Counters: `{"total": n, "endpoints": {"GET /path": {"count": n, "statuses": {...}}}}`.
    pub async fn calls(&self) -> Value {
        self.get("calls").await
    }

    /// Calls to one endpoint, e.g. `"GET /mesure_synchrone_auto/v2/consommation_quotidienne"`.
    pub async fn call_count(&self, endpoint: &str) -> u64 {
        self.calls().await["endpoints"][endpoint]["count"]
            .as_u64()
            .unwrap_or(0)
    }

    /// All calls counted (admin calls excluded).
    pub async fn total_calls(&self) -> u64 {
        self.calls().await["total"].as_u64().unwrap_or(0)
    }

    pub async fn clear_calls(&self) {
        self.send(
            self.http.delete(format!("{}/sim/admin/calls", self.base)),
            "clear calls",
        )
        .await;
    }

    /// Recent requests, oldest first.
    pub async fn requests(&self) -> Vec<Value> {
        self.get("requests")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Back to the state right after start.
    pub async fn reset(&self) {
        self.post("reset", Value::Null).await;
    }

    pub async fn consents(&self) -> Vec<Value> {
        self.get("consents")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn revoke_consent(&self, id: u64) {
        self.post(&format!("consents/{id}/revoke"), Value::Null)
            .await;
    }

    pub async fn revoke_prm(&self, prm: &str) {
        self.post(&format!("prms/{prm}/revoke"), Value::Null).await;
    }

    /// Change run-time settings: `today`, `redirect_uri`, `token_ttl_secs`,
    /// `expires_in_as_string`.
    pub async fn config(&self, change: Value) -> Value {
        self.post("config", change).await
    }

    /// Change quota limits (`per_second`, `per_hour_2026`, `per_hour_v5`,
    /// `per_hour_v1`, `reset_usage`).
    pub async fn quota(&self, change: Value) -> Value {
        self.post("quota", change).await
    }

    /// Expire every access token now.
    pub async fn expire_tokens(&self) {
        self.post("tokens/expire", Value::Null).await;
    }

    /// The SGE access services ordered (`{"services": [...]}`, each with
    /// `serviceSouscritId`, `affaireId`, `pointId`, `typeDonnees`, `dateFin`,
    /// `dateArret`…).
    pub async fn sge_services(&self) -> Value {
        self.get("sge/services").await
    }
}
