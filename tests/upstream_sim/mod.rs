//! Test support for the upstream contract tests: the real `enedis-sim` binary on
//! 127.0.0.1 (free port), its admin API, a client configured for it, and scripted
//! consents. The simulator is stopped on drop (SIGTERM, then kill).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use quoalise_agent::config::{ApiGeneration, EnedisConfig, Secret};
use quoalise_agent::store::{Consent, Store};
use quoalise_agent::upstream::{Callback, ConsentDuration, EnedisClient, Upstream};
use serde_json::Value;

pub const CLIENT_ID: &str = "sim-client";
pub const CLIENT_SECRET: &str = "sim-secret";
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/dataconnect/redirect";

/// A running simulator.
pub struct Sim {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Sim {
    /// Start `enedis-sim` with its defaults plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enedis-sim"))
            .args(["--listen", "127.0.0.1:0", "--redirect-uri", REDIRECT_URI])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("enedis-sim starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("enedis-sim prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Sim {
            child,
            url: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/sim/admin/{path}", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/sim/admin/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "POST {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn faults(&self, faults: Value) {
        self.admin_post("faults", faults).await;
    }

    pub async fn clear_calls(&self) {
        let r = self
            .http
            .delete(format!("{}/sim/admin/calls", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Calls counted for `"METHOD /path"`.
    pub async fn calls(&self, endpoint: &str) -> u64 {
        self.admin_get("calls").await["endpoints"][endpoint]["count"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Calls counted for `"METHOD /path"` answered with `status`.
    pub async fn calls_with(&self, endpoint: &str, status: u16) -> u64 {
        self.admin_get("calls").await["endpoints"][endpoint]["statuses"][status.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    /// Every counter, for printing.
    pub async fn all_calls(&self) -> Value {
        self.admin_get("calls").await
    }

    /// Follow the consent page with `sim_auto=accept` and return the redirect's query.
    pub async fn accept(&self, authorize_url: &url::Url) -> String {
        let mut url = authorize_url.clone();
        url.query_pairs_mut().append_pair("sim_auto", "accept");
        let r = self.http.get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "{}", r.text().await.unwrap());
        let location = r.headers()["location"].to_str().unwrap();
        let location = url::Url::parse(location).unwrap();
        location.query().unwrap_or_default().to_owned()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client configuration pointing at `sim`.
pub fn config(api: ApiGeneration, sim: &Sim) -> EnedisConfig {
    EnedisConfig {
        api,
        base_url: sim.url.clone(),
        authorize_url: sim.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        redirect_uri: REDIRECT_URI.into(),
        sandbox: true,
        calls_per_second: 5,
        calls_per_hour: 1000,
        connect_timeout_secs: 2,
        request_timeout_secs: 10,
        max_retries: 2,
        quota_wait_secs: 30,
    }
}

/// A fresh store in `dir`.
pub fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path().join("agent.db")).unwrap()
}

pub fn one_year() -> ConsentDuration {
    "P1Y".parse().unwrap()
}

/// A consent given through the simulator's consent page (sandbox profile = last
/// digit of `state`), resolved and stored by `client`.
pub async fn give_consent(sim: &Sim, client: &EnedisClient, state: &str, owner: &str) -> Consent {
    let url = client.authorize_url(state, &one_year()).unwrap();
    let query = sim.accept(&url).await;
    let callback = Callback::from_query(&query);
    client
        .resolve_consent(owner, &callback, &one_year())
        .await
        .unwrap_or_else(|e| panic!("consent {state}: {e}"))
}
