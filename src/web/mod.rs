//! The consent flow on the web: the page a consumer sees before going to Enedis
//! (`GET /authorize`), and Enedis's return (`GET /redirect`).
//!
//! ```text
//! peer ──get_authorize_uri──▶ agent: description stored, URI <public_url>/authorize?id=…
//! consumer ──GET /authorize?id=…&duration=…&redirect_uri=…&state=…──▶ agent page
//!          ──"Continuer vers Enedis"──▶ Enedis consent page (state = fresh OAuth state)
//!          ◀──302 <redirect_uri registered at Enedis>?…&state=…── Enedis
//!          ──GET /redirect?…──▶ agent: state consumed, consent resolved and stored,
//!                               peer notified over XMPP,
//!          ◀──303 <peer redirect_uri>?…&usage_points=PRM,PRM── (or a confirmation page)
//! ```
//!
//! Everything the handlers need comes in a [`WebState`] built by the caller (no
//! globals): the store, the upstream client, a [`Notifier`] for the peer's XMPP
//! message, a [`PeerDirectory`] for the peers' redirect URIs, and [`WebSettings`].
//! [`router`] gives an axum `Router` to merge into the agent's web server.
//!
//! Every response of this router carries security headers (a CSP that allows no
//! script, no framing, `Referrer-Policy: no-referrer` so neither the OAuth state
//! nor the code leaks to the next site, `nosniff`, `no-store`).

pub mod authorize;
pub mod callback;
pub mod description;
pub mod html;
pub mod notify;
pub mod redirect_uri;

pub use description::{DescriptionError, DescriptionInput, authorize_uri, register};
pub use notify::{ConsentNotification, NS_AUTHORIZE, Notifier, NotifyError};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rand::RngExt;
use url::Url;

use crate::config::{Config, PeerConfig, normalize_bare_jid};
use crate::quoalise::Scopes;
use crate::store::Store;
use crate::store::oauth::MAX_LIVE_STATES;
use crate::upstream::Upstream;

/// How long a consumer has between opening the consent page and coming back from
/// Enedis.
pub const STATE_TTL: Duration = Duration::from_secs(30 * 60);

/// The stylesheet of every page, served at `static/consent.css`.
const STYLESHEET: &str = include_str!("consent.css");

/// No script at all, styles from us only, https images (the peer's logo), no
/// framing, no form posting anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src https:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Settings of the consent pages.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// `web.public_url`, without trailing slash: where consumers reach us.
    pub public_url: String,
    /// `enedis.sandbox`: whether `test_client` exists.
    pub sandbox: bool,
    /// Whether the agent reads Enedis Data Connect (has `[enedis]`): without it,
    /// the consent pages answer a page saying so ([`no_data_connect`]).
    pub data_connect: bool,
    /// Path of Enedis's return on this server (default `/redirect`).
    pub callback_path: String,
    /// Lifetime of an OAuth state (default [`STATE_TTL`]).
    pub state_ttl: Duration,
    /// Cap on states in progress (default [`MAX_LIVE_STATES`]).
    pub max_live_states: i64,
}

impl WebSettings {
    /// The settings the configuration implies. The callback path is
    /// `enedis.redirect_uri` relative to `web.public_url` when it lies under it
    /// (the default `<public_url>/redirect` gives `/redirect`); otherwise the
    /// reverse proxy must map it to `/redirect`.
    pub fn from_config(config: &Config) -> WebSettings {
        let public_url = config.web.public_url.trim_end_matches('/').to_owned();
        let callback_path = config
            .enedis
            .as_ref()
            .and_then(|enedis| enedis.redirect_uri.strip_prefix(&public_url))
            .filter(|rest| rest.starts_with('/') && rest.len() > 1)
            .map(|rest| rest.split(['?', '#']).next().unwrap_or(rest).to_owned())
            .unwrap_or_else(|| "/redirect".to_owned());
        WebSettings {
            public_url,
            sandbox: config.enedis.as_ref().is_some_and(|e| e.sandbox),
            data_connect: config.has_data_connect(),
            callback_path,
            state_ttl: STATE_TTL,
            max_live_states: MAX_LIVE_STATES,
        }
    }
}

/// Where the web layer learns which peers exist and where their consumers may be
/// sent back. Swappable at run time by the implementation (a configuration reload).
pub trait PeerDirectory: Send + Sync + 'static {
    /// The redirect URIs of peer `jid` (a normalised bare JID), or `None` when it
    /// is not (any more) an allowed peer.
    fn redirect_uris(&self, jid: &str) -> Option<Vec<Url>>;

    /// The data scopes of peer `jid` (what its consumers' consent lets it
    /// receive), or `None` when it is not (any more) an allowed peer.
    fn scopes(&self, jid: &str) -> Option<Scopes>;
}

impl PeerDirectory for Vec<PeerConfig> {
    fn redirect_uris(&self, jid: &str) -> Option<Vec<Url>> {
        let bare = normalize_bare_jid(jid).ok()?;
        self.iter()
            .find(|p| p.jid == bare)
            .map(|p| p.redirect_uris.clone())
    }

    fn scopes(&self, jid: &str) -> Option<Scopes> {
        let bare = normalize_bare_jid(jid).ok()?;
        self.iter().find(|p| p.jid == bare).map(|p| p.scopes)
    }
}

/// The configured peers, replaceable as a whole (e.g. on SIGHUP). Cheap to clone:
/// clones share the list.
#[derive(Debug, Clone, Default)]
pub struct SharedPeers {
    // A std RwLock: reads clone an Arc, writes happen on reload only.
    inner: Arc<RwLock<Arc<Vec<PeerConfig>>>>,
}

impl SharedPeers {
    pub fn new(peers: Vec<PeerConfig>) -> Self {
        SharedPeers {
            inner: Arc::new(RwLock::new(Arc::new(peers))),
        }
    }

    pub fn replace(&self, peers: Vec<PeerConfig>) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(peers);
    }

    fn snapshot(&self) -> Arc<Vec<PeerConfig>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl PeerDirectory for SharedPeers {
    fn redirect_uris(&self, jid: &str) -> Option<Vec<Url>> {
        self.snapshot().redirect_uris(jid)
    }

    fn scopes(&self, jid: &str) -> Option<Scopes> {
        self.snapshot().scopes(jid)
    }
}

/// What the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    upstream: Arc<dyn Upstream>,
    notifier: Arc<dyn Notifier>,
    peers: Arc<dyn PeerDirectory>,
    settings: WebSettings,
}

impl WebState {
    pub fn new(
        store: Store,
        upstream: Arc<dyn Upstream>,
        notifier: Arc<dyn Notifier>,
        peers: Arc<dyn PeerDirectory>,
        settings: WebSettings,
    ) -> WebState {
        WebState {
            inner: Arc::new(Inner {
                store,
                upstream,
                notifier,
                peers,
                settings,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn upstream(&self) -> &dyn Upstream {
        self.inner.upstream.as_ref()
    }

    pub fn notifier(&self) -> &dyn Notifier {
        self.inner.notifier.as_ref()
    }

    pub fn peers(&self) -> &dyn PeerDirectory {
        self.inner.peers.as_ref()
    }

    pub fn settings(&self) -> &WebSettings {
        &self.inner.settings
    }
}

/// The consent pages, to merge into the agent's web server:
/// `GET /authorize`, `GET <callback_path>` (default `/redirect`) and
/// `GET /static/consent.css`.
///
/// When `public_url` has a path (`https://agent.example.org/dataconnect`), the
/// pages are served both at the root and under that path, so a reverse proxy may
/// strip the prefix or pass it through.
pub fn router(state: WebState) -> Router {
    let callback_path = state.settings().callback_path.clone();
    let prefix = public_path(&state.settings().public_url);
    let pages: Router<WebState> = if state.settings().data_connect {
        Router::new()
            .route("/authorize", get(authorize::handle))
            .route(&callback_path, get(callback::handle))
    } else {
        Router::new()
            .route("/authorize", get(no_data_connect))
            .route(&callback_path, get(no_data_connect))
    }
    .route("/static/consent.css", get(stylesheet));
    let pages = match prefix {
        Some(prefix) => pages.clone().nest(&prefix, pages),
        None => pages,
    };
    pages
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The path of `public_url` without trailing slash, when it has one.
fn public_path(public_url: &str) -> Option<String> {
    let url = Url::parse(public_url).ok()?;
    let path = url.path().trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// The consent pages of an agent without `[enedis]`: it collects no Data Connect
/// consent, so there is nothing to consent to here (404, and a page saying why
/// rather than an error).
async fn no_data_connect() -> Page {
    problem_page(
        StatusCode::NOT_FOUND,
        "Pas de consentement à donner ici",
        "<p>Ce service ne recueille pas de consentement Enedis Data Connect : il lit \
         les compteurs par Enedis SGE, sous un mandat que vous avez signé avec son \
         exploitant. Le lien que vous avez suivi ne mène à aucune page de \
         consentement ; rapprochez-vous de celui qui vous l'a donné.</p>",
        Some(&crate::config::NoDataConnect.to_string()),
    )
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLESHEET,
    )
        .into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// An HTML page with its status.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub html: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            self.html,
        )
            .into_response()
    }
}

/// A page that explains a problem: a title, a French explanation (HTML already
/// escaped by the caller), and an optional technical detail (escaped here).
pub(crate) fn problem_page(
    status: StatusCode,
    title: &str,
    explanation_html: &str,
    detail: Option<&str>,
) -> Page {
    let detail = detail
        .map(|d| {
            format!(
                "<p class=\"detail\">Détail : <code>{}</code></p>",
                html::escape(d)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<div class=\"card problem\">\n<h1>{}</h1>\n{explanation_html}\n{detail}\n</div>",
        html::escape(title)
    );
    Page {
        status,
        html: html::page(title, &body),
    }
}

/// `n` random letters and digits from the thread's CSPRNG (ChaCha, seeded by the
/// OS): 5.95 bits each.
pub(crate) fn random_alphanumeric(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A fresh OAuth state: 32 random letters and digits (190 bits), then the sandbox
/// test client's digit when there is one, else a random letter. The Enedis sandbox
/// (and `enedis-sim`) picks its test client from the LAST character of the state,
/// so a state must end in a digit only when a test client was asked for.
pub fn new_oauth_state(test_client: Option<u8>) -> String {
    let mut state = random_alphanumeric(32);
    match test_client {
        Some(digit) if digit <= 9 => state.push(char::from(b'0' + digit)),
        _ => state.push(char::from(rand::rng().sample(rand::distr::Alphabetic))),
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_end_in_a_digit_only_for_a_test_client() {
        for _ in 0..200 {
            let s = new_oauth_state(None);
            assert_eq!(s.len(), 33);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()), "{s}");
            assert!(s.as_bytes()[32].is_ascii_alphabetic(), "{s}");
        }
        let s = new_oauth_state(Some(7));
        assert!(s.ends_with('7'));
        assert_ne!(new_oauth_state(Some(7)), s);
    }

    #[test]
    fn the_callback_path_follows_the_registered_redirect_uri() {
        let peers = |path: &str, public: &str, redirect: &str| {
            let text = format!(
                "[xmpp]\njid = \"agent@example.org/agent\"\npassword = \"pw\"\n\
                 [enedis]\nclient_id = \"c\"\nclient_secret = \"s\"\nredirect_uri = \"{redirect}\"\n\
                 [web]\npublic_url = \"{public}\"\n[store]\npath = \"{path}\"\n"
            );
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("config.toml");
            std::fs::write(&file, text).unwrap();
            let config = Config::load_with_env(&file, Vec::<(String, String)>::new()).unwrap();
            WebSettings::from_config(&config).callback_path
        };
        assert_eq!(
            peers(
                "/tmp/a.db",
                "https://agent.example.org/dc",
                "https://agent.example.org/dc/redirect"
            ),
            "/redirect"
        );
        assert_eq!(
            peers(
                "/tmp/a.db",
                "https://agent.example.org/dc",
                "https://agent.example.org/dc/enedis/back"
            ),
            "/enedis/back"
        );
        assert_eq!(
            peers(
                "/tmp/a.db",
                "https://agent.example.org/dc",
                "https://other.example.org/cb"
            ),
            "/redirect"
        );
    }

    #[test]
    fn peers_are_looked_up_by_normalised_bare_jid() {
        let peers = vec![PeerConfig {
            jid: "app@example.org".into(),
            usage_points: Vec::new(),
            redirect_uris: vec![Url::parse("https://app.example.org/").unwrap()],
            weight: 1,
            calls_per_hour: None,
            scopes: Scopes::NONE,
        }];
        assert_eq!(peers.redirect_uris("App@Example.org").unwrap().len(), 1);
        assert!(peers.redirect_uris("other@example.org").is_none());
        assert_eq!(peers.scopes("App@Example.org"), Some(Scopes::NONE));
        assert!(peers.scopes("other@example.org").is_none());
        let shared = SharedPeers::new(peers);
        assert!(shared.redirect_uris("app@example.org").is_some());
        shared.replace(Vec::new());
        assert!(shared.redirect_uris("app@example.org").is_none());
    }
}
