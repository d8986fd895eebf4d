//! Test support for the upstream tests (contract, crash, cache), on top of the
//! simulator's own harness (`tests/common/sim.rs`: a real HTTP server on
//! 127.0.0.1, port 0, stopped on drop): a client configured for it, call counters
//! by status, and consents given through its consent page.

use crate::common::sim as harness;

use quoalise_agent::config::{ApiGeneration, EnedisConfig, Secret};
use quoalise_agent::store::{Consent, Store};
use quoalise_agent::upstream::{Ask, Callback, ConsentDuration, EnedisClient, Upstream};
use serde_json::Value;

pub use harness::{CLIENT_ID, CLIENT_SECRET};

/// The redirect URI registered for the application at the simulator.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/dataconnect/redirect";

/// A running simulator with our application's redirect URI registered.
pub struct Sim {
    inner: harness::Sim,
    pub url: String,
}

impl Sim {
    /// Start `enedis-sim` with its defaults plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Sim {
        let mut args = vec!["--redirect-uri", REDIRECT_URI];
        args.extend_from_slice(extra);
        let inner = harness::Sim::start(&args);
        let url = inner.base_url().to_owned();
        Sim { inner, url }
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        self.inner.admin().get(path).await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        self.inner.admin().post(path, body).await
    }

    pub async fn faults(&self, faults: Value) {
        self.inner.admin().faults(faults).await;
    }

    pub async fn clear_calls(&self) {
        self.inner.admin().clear_calls().await;
    }

    /// Calls counted for `"METHOD /path"`.
    pub async fn calls(&self, endpoint: &str) -> u64 {
        self.inner.admin().call_count(endpoint).await
    }

    /// Calls counted for `"METHOD /path"` answered with `status`.
    pub async fn calls_with(&self, endpoint: &str, status: u16) -> u64 {
        self.inner.admin().calls().await["endpoints"][endpoint]["statuses"][status.to_string()]
            .as_u64()
            .unwrap_or(0)
    }

    /// Calls counted at every endpoint.
    pub async fn total_calls(&self) -> u64 {
        self.inner.admin().total_calls().await
    }

    /// Every counter.
    pub async fn all_calls(&self) -> Value {
        self.inner.admin().calls().await
    }

    /// What the simulator answers the application to `GET path_and_query` (with a
    /// fresh application token), as a peer of the test would see it first-hand.
    pub async fn app_get_json(&self, path_and_query: &str) -> (u16, Value) {
        let token = self.inner.app_token().await;
        self.inner.get_json(&token, path_and_query).await
    }

    /// Follow the consent page with `sim_auto=accept` and return the redirect's query.
    pub async fn accept(&self, authorize_url: &url::Url) -> String {
        let mut url = authorize_url.clone();
        url.query_pairs_mut().append_pair("sim_auto", "accept");
        let r = self.inner.http().get(url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 302, "{}", r.text().await.unwrap());
        let location = r.headers()["location"].to_str().unwrap();
        let location = url::Url::parse(location).unwrap();
        location.query().unwrap_or_default().to_owned()
    }
}

/// The ask of the agent's own calls, borrowable for as long as a test needs.
pub static AGENT: Ask = Ask::agent();

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
        interactive_reserve_percent: 20,
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
