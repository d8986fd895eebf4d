//! Opening one authenticated client stream for the [`StanzaStream`]: resolve the
//! server, connect over TCP with `TCP_NODELAY`, STARTTLS with our own rustls
//! configuration (system roots plus `xmpp.ca_file`), then SASL.
//!
//! Why not tokio-xmpp's `StartTlsServerConnector` (or a custom `ServerConnector`
//! fed to `StanzaStream::new_c2s`):
//! - its TLS configuration cannot be given extra trust roots;
//! - the `ServerConnector` contract hands the stream back *before* the stream
//!   features are read, so a connector cannot "use STARTTLS when offered, else
//!   continue in plaintext when allowed" without restarting the stream;
//! - `new_c2s` retries forever with an ERROR line per attempt and no way for us to
//!   see why an attempt failed; we want one clear line per change of cause, and the
//!   cause (wrong password, refused connection, untrusted certificate) in the
//!   first-session deadline message.
//!
//! So this module owns the whole login on tokio-xmpp's public building blocks
//! (`initiate_stream`, `client_login`) and the session module hands the result
//! to `StanzaStream::new` as its reconnector.
//!
//! [`StanzaStream`]: tokio_xmpp::stanzastream::StanzaStream

use std::borrow::Cow;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_xmpp::connect::{AsyncReadAndWrite, DnsConfig};
use tokio_xmpp::parsers::jid::{FullJid, Jid};
use tokio_xmpp::parsers::{ns, starttls, stream_features::StreamFeatures};
use tokio_xmpp::stanzastream::Connection;
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmlStream, XmppStreamElement,
    initiate_stream,
};

use super::wire::{SpliceIo, Splices, StanzaLimit};
use crate::config::{Secret, XmppConfig};

/// TCP connect attempt to one address.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Whole login (TCP, STARTTLS, TLS handshake, SASL, second stream header): a server
/// that accepts TCP but never speaks must not hold a reconnect attempt forever.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the agent's XMPP settings cannot be used at all (fatal: `run` exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("xmpp.jid '{jid}' is not a valid JID: {reason}")]
    InvalidJid { jid: String, reason: String },
    #[error(
        "xmpp.jid '{0}' must be a full JID with a localpart and a fixed resource, e.g. agent@example.org/agent"
    )]
    JidNotFull(String),
    #[error("xmpp.server '{0}' must be host:port (e.g. xmpp.example.org:5222)")]
    InvalidServer(String),
    #[error("xmpp.ca_file '{path}': {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// Why one connection attempt failed, with what an operator should check.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {target}: {reason}")]
    Resolve { target: String, reason: String },
    #[error("cannot connect to {target}: {source}")]
    Tcp {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the server does not offer STARTTLS and xmpp.allow_plaintext is false: refusing to log in unencrypted"
    )]
    NoStartTls,
    #[error("TLS handshake with '{domain}' failed: {source}")]
    Tls {
        domain: String,
        #[source]
        source: io::Error,
    },
    #[error("authentication as {jid} failed: {reason}")]
    Auth { jid: String, reason: String },
    #[error("the server closed or broke the stream during login: {0}")]
    Stream(String),
    #[error("login did not complete within {0:?}")]
    Timeout(Duration),
}

impl ConnectError {
    /// The likely cause in operator terms, for the first-session deadline message.
    pub fn likely_cause(&self) -> &'static str {
        match self {
            ConnectError::Resolve { .. } => {
                "the server name does not resolve: check xmpp.server or the DNS SRV records of the JID's domain"
            }
            ConnectError::Tcp { source, .. } => match source.kind() {
                io::ErrorKind::ConnectionRefused => {
                    "nothing listens at that address: is the XMPP server running, and is xmpp.server right?"
                }
                io::ErrorKind::TimedOut => {
                    "the server does not answer: a firewall, or a wrong xmpp.server address"
                }
                _ => "the XMPP server is unreachable from here",
            },
            ConnectError::NoStartTls => {
                "the server offers no STARTTLS: enable TLS on the server (xmpp.allow_plaintext is only meant for loopback tests)"
            }
            ConnectError::Tls { .. } => {
                "the server's certificate is not trusted or does not name the JID's domain: set xmpp.ca_file to the CA that signed it"
            }
            ConnectError::Auth { .. } => {
                "wrong password or unknown account: check xmpp.jid and xmpp.password (or password_file)"
            }
            ConnectError::Stream(_) | ConnectError::Timeout(_) => {
                "the server broke off the login: check the server's log"
            }
        }
    }

    /// A coarse kind, so repeated failures with the same cause are logged once.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ConnectError::Resolve { .. } => "resolve",
            ConnectError::Tcp { .. } => "tcp",
            ConnectError::NoStartTls => "no-starttls",
            ConnectError::Tls { .. } => "tls",
            ConnectError::Auth { .. } => "auth",
            ConnectError::Stream(_) => "stream",
            ConnectError::Timeout(_) => "timeout",
        }
    }
}

/// Where to connect.
#[derive(Debug, Clone)]
enum Target {
    /// `xmpp.server = "host:port"`.
    HostPort { host: String, port: u16 },
    /// DNS SRV `_xmpp-client._tcp.<domain>`, falling back to `<domain>:5222`.
    Srv { domain: String },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::HostPort { host, port } => write!(f, "{host}:{port}"),
            Target::Srv { domain } => write!(f, "{domain} (DNS SRV)"),
        }
    }
}

/// Whether the stream of a successful login is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tls,
    Plaintext,
}

/// Everything needed to (re)open the agent's stream; cheap to clone.
#[derive(Clone)]
pub struct Connector {
    target: Target,
    jid: FullJid,
    password: Secret,
    tls: Arc<ClientConfig>,
    allow_plaintext: bool,
    timeouts: Timeouts,
    /// Payloads written in place of their placeholders by every connection.
    splices: Splices,
    /// `xmpp.max_stanza_bytes`, and what the server last advertised.
    limit: StanzaLimit,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("jid", &self.jid)
            .field("allow_plaintext", &self.allow_plaintext)
            .finish_non_exhaustive()
    }
}

/// Installs aws-lc-rs as rustls' process-wide provider, once. Another part of the
/// process (reqwest) may have installed one first: that is fine.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Parses `xmpp.jid`: a full JID with a localpart and a resource.
pub fn parse_agent_jid(jid: &str) -> Result<FullJid, SetupError> {
    let parsed = Jid::new(jid).map_err(|e| SetupError::InvalidJid {
        jid: jid.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.try_into_full() {
        Ok(full) if full.node().is_some() => Ok(full),
        _ => Err(SetupError::JidNotFull(jid.to_owned())),
    }
}

/// Builds the rustls client configuration: the system's roots plus the PEM
/// certificates of `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<ClientConfig, SetupError> {
    install_crypto_provider();
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(system_roots = added, "loaded system trust roots");
    if let Some(path) = ca_file {
        let ca_err = |reason: String| SetupError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| ca_err(format!("cannot read it: {e}")))?;
        let mut count = 0;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| ca_err(format!("invalid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            count += 1;
        }
        if count == 0 {
            return Err(ca_err("holds no PEM certificate".to_owned()));
        }
        tracing::debug!(path = %path.display(), certificates = count, "loaded extra trust roots");
    }
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Connector {
    /// Validates the XMPP settings and prepares the TLS configuration.
    pub fn new(config: &XmppConfig, timeouts: Timeouts) -> Result<Self, SetupError> {
        let jid = parse_agent_jid(&config.jid)?;
        let target = match &config.server {
            Some(server) => parse_host_port(server)?,
            None => Target::Srv {
                domain: jid.domain().as_str().to_owned(),
            },
        };
        let tls = Arc::new(tls_config(config.ca_file.as_deref())?);
        Ok(Connector {
            target,
            jid,
            password: config.password.clone(),
            tls,
            allow_plaintext: config.allow_plaintext,
            timeouts,
            splices: Splices::new(),
            limit: StanzaLimit::new(config.max_stanza_bytes),
        })
    }

    /// The payloads its connections splice into stanzas.
    pub fn splices(&self) -> &Splices {
        &self.splices
    }

    /// The largest stanza its sessions may send.
    pub fn limit(&self) -> &StanzaLimit {
        &self.limit
    }

    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// Human-readable description of where this connector goes.
    pub fn target(&self) -> String {
        self.target.to_string()
    }

    /// Opens, secures and authenticates one stream, ready for resource binding
    /// by the [`StanzaStream`](tokio_xmpp::stanzastream::StanzaStream).
    pub async fn login(&self) -> Result<(Connection, Transport), ConnectError> {
        tokio::time::timeout(LOGIN_TIMEOUT, self.login_inner())
            .await
            .map_err(|_| ConnectError::Timeout(LOGIN_TIMEOUT))?
    }

    async fn login_inner(&self) -> Result<(Connection, Transport), ConnectError> {
        let tcp = self.tcp_connect().await?;
        // Stream management writes its <a/> and the reply separately: without
        // NODELAY, Nagle plus delayed ACK adds ~40 ms per hop (xmpp-notes.md).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY; replies may be delayed");
        }
        let domain = self.jid.domain().as_str();
        let (features, stream) = self.open_stream(tcp).await?;

        if features.can_starttls() {
            let tcp = starttls(stream).await?;
            let server_name =
                ServerName::try_from(domain.to_owned()).map_err(|e| ConnectError::Tls {
                    domain: domain.to_owned(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, e),
                })?;
            let tls = TlsConnector::from(self.tls.clone())
                .connect(server_name, tcp)
                .await
                .map_err(|source| ConnectError::Tls {
                    domain: domain.to_owned(),
                    source,
                })?;
            let channel_binding = channel_binding(&tls);
            let (features, stream) = self.open_stream(tls).await?;
            let conn = self.authenticate(stream, features, channel_binding).await?;
            Ok((conn, Transport::Tls))
        } else if self.allow_plaintext {
            let conn = self
                .authenticate(stream, features, ChannelBinding::None)
                .await?;
            Ok((conn, Transport::Plaintext))
        } else {
            Err(ConnectError::NoStartTls)
        }
    }

    async fn tcp_connect(&self) -> Result<TcpStream, ConnectError> {
        match &self.target {
            Target::HostPort { host, port } => {
                let target = self.target.to_string();
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| ConnectError::Resolve {
                        target: target.clone(),
                        reason: e.to_string(),
                    })?
                    .collect();
                let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
                for addr in addrs {
                    match tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(addr)).await
                    {
                        Ok(Ok(stream)) => return Ok(stream),
                        Ok(Err(e)) => last = e,
                        Err(_) => {
                            last = io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("{addr} did not accept within {TCP_CONNECT_TIMEOUT:?}"),
                            )
                        }
                    }
                }
                Err(ConnectError::Tcp {
                    target,
                    source: last,
                })
            }
            Target::Srv { domain } => {
                let dns = DnsConfig::srv_default_client(domain);
                tokio::time::timeout(TCP_CONNECT_TIMEOUT * 2, dns.resolve())
                    .await
                    .map_err(|_| ConnectError::Tcp {
                        target: self.target.to_string(),
                        source: io::Error::new(io::ErrorKind::TimedOut, "no answer"),
                    })?
                    .map_err(|e| match e {
                        tokio_xmpp::Error::Io(source) => ConnectError::Tcp {
                            target: self.target.to_string(),
                            source,
                        },
                        other => ConnectError::Resolve {
                            target: self.target.to_string(),
                            reason: other.to_string(),
                        },
                    })
            }
        }
    }

    /// Opens the client stream to our domain over `io` (outgoing payloads
    /// spliced in) and reads the server's features: on the TCP connection, and
    /// again on TLS after STARTTLS.
    async fn open_stream<S>(
        &self,
        io: S,
    ) -> Result<
        (
            StreamFeatures,
            XmlStream<SpliceIo<BufStream<S>>, FallibleStreamElement>,
        ),
        ConnectError,
    >
    where
        S: AsyncRead + AsyncWrite + Unpin,
        SpliceIo<BufStream<S>>: AsyncBufRead + AsyncWrite + Unpin,
    {
        let header = StreamHeader {
            to: Some(Cow::Borrowed(self.jid.domain().as_str())),
            from: None,
            id: None,
        };
        let pending = initiate_stream(
            SpliceIo::new(BufStream::new(io), self.splices.clone()),
            ns::JABBER_CLIENT,
            header,
            self.timeouts,
        )
        .await
        .map_err(stream_err)?;
        pending
            .recv_features::<FallibleStreamElement>()
            .await
            .map_err(|e| ConnectError::Stream(e.to_string()))
    }

    async fn authenticate<S>(
        &self,
        stream: XmlStream<S, FallibleStreamElement>,
        features: StreamFeatures,
        channel_binding: ChannelBinding,
    ) -> Result<Connection, ConnectError>
    where
        S: AsyncBufRead + AsyncWrite + AsyncReadAndWrite + Send + Unpin + 'static,
    {
        let username = self.jid.node().map(|n| n.as_str()).unwrap_or_default();
        let creds = Credentials::default()
            .with_username(username)
            .with_password(self.password.expose())
            .with_channel_binding(channel_binding);
        let initiating = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
            .await
            .map_err(|e| match e {
                tokio_xmpp::Error::Auth(a) => ConnectError::Auth {
                    jid: self.jid.to_bare().to_string(),
                    reason: a.to_string(),
                },
                other => ConnectError::Stream(other.to_string()),
            })?;
        let pending = initiating
            .send_header(StreamHeader {
                to: Some(Cow::Borrowed(self.jid.domain().as_str())),
                from: None,
                id: None,
            })
            .await
            .map_err(stream_err)?;
        let (features, stream) = pending
            .recv_features::<FallibleStreamElement>()
            .await
            .map_err(|e| ConnectError::Stream(e.to_string()))?;
        // XEP-0478: what the server accepts from this authenticated stream.
        let advertised = features
            .limits
            .as_ref()
            .and_then(|l| l.max_bytes)
            .and_then(|n| usize::try_from(n.get()).ok());
        self.limit.set_advertised(advertised);
        Ok(Connection {
            stream: stream.box_stream(),
            features,
            identity: Jid::from(self.jid.clone()),
        })
    }
}

fn stream_err(e: io::Error) -> ConnectError {
    ConnectError::Stream(e.to_string())
}

fn parse_host_port(server: &str) -> Result<Target, SetupError> {
    let invalid = || SetupError::InvalidServer(server.to_owned());
    // Bracketed IPv6 literal "[::1]:5222" or "host:port".
    let (host, port) = server.rsplit_once(':').ok_or_else(invalid)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| invalid())?;
    if host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok(Target::HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Sends `<starttls/>`, waits for `<proceed/>` and hands back the raw TCP stream.
async fn starttls(
    mut stream: XmlStream<SpliceIo<BufStream<TcpStream>>, FallibleStreamElement>,
) -> Result<TcpStream, ConnectError> {
    stream
        .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
            starttls::Request,
        )))
        .await
        .map_err(stream_err)?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(
                starttls::Nonza::Proceed(_),
            )))) => break,
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Starttls(_)))) => {
                return Err(ConnectError::Tls {
                    domain: String::new(),
                    source: io::Error::other("the server refused STARTTLS (<failure/>)"),
                });
            }
            Some(Ok(other)) => {
                return Err(ConnectError::Stream(format!(
                    "unexpected element while waiting for <proceed/>: {other:?}"
                )));
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::HardError(e))) => return Err(stream_err(e)),
            Some(Err(ReadError::ParseError(e))) => return Err(ConnectError::Stream(e.to_string())),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(ConnectError::Stream(
                    "stream closed before <proceed/>".into(),
                ));
            }
        }
    }
    // Nothing follows <proceed/> before the TLS handshake, so the buffers are empty.
    Ok(stream.into_inner().into_inner().into_inner())
}

/// TLS 1.3 exporter channel binding, as tokio-xmpp's own connector computes it.
fn channel_binding(tls: &tokio_rustls::client::TlsStream<TcpStream>) -> ChannelBinding {
    let (_, conn) = tls.get_ref();
    if conn.protocol_version() == Some(tokio_rustls::rustls::ProtocolVersion::TLSv1_3)
        && let Ok(data) =
            conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
    {
        return ChannelBinding::TlsExporter(data);
    }
    ChannelBinding::None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_jid_must_be_full_with_localpart() {
        assert!(parse_agent_jid("agent@example.org/agent").is_ok());
        assert!(matches!(
            parse_agent_jid("agent@example.org"),
            Err(SetupError::JidNotFull(_))
        ));
        assert!(matches!(
            parse_agent_jid("example.org/agent"),
            Err(SetupError::JidNotFull(_))
        ));
        assert!(matches!(
            parse_agent_jid("a@@b"),
            Err(SetupError::InvalidJid { .. })
        ));
    }

    #[test]
    fn server_is_host_and_port() {
        assert!(matches!(
            parse_host_port("127.0.0.1:5222"),
            Ok(Target::HostPort { ref host, port: 5222 }) if host == "127.0.0.1"
        ));
        assert!(matches!(
            parse_host_port("[::1]:5222"),
            Ok(Target::HostPort { ref host, port: 5222 }) if host == "::1"
        ));
        assert!(parse_host_port("xmpp.example.org").is_err());
        assert!(parse_host_port("xmpp.example.org:http").is_err());
        assert!(parse_host_port(":5222").is_err());
    }

    #[test]
    fn ca_file_errors_name_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = tls_config(Some(&missing)).unwrap_err().to_string();
        assert!(
            err.contains("missing.pem") && err.contains("cannot read"),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = tls_config(Some(&empty)).unwrap_err().to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
