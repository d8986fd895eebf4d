//! SGE over mutual TLS, as `sge-ws.enedis.fr`: the client must present a
//! certificate issued by a CA the server trusts (NOTES "Authentication").
//!
//! The simulator's own test CA is generated with `rcgen` (aws-lc-rs, the agent's
//! rustls provider) into the directory named by `--sge-tls-dir`:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the test CA (trust it to reach the SGE listener; it also signs the agent) |
//! | `server.pem`, `server.key` | the listener's certificate (`localhost`, `127.0.0.1`, `::1`) |
//! | `agent.pem`, `agent.key` | the one client certificate issued, to "quoalise-agent" |
//!
//! When the five files are already there they are reused (so an agent configured
//! once keeps working across restarts); otherwise all five are generated anew (the
//! CA key is never written: nothing else can be issued by that CA later).
//! Clients are verified with rustls' `WebPkiClientVerifier` against that CA only,
//! so a certificate of another CA, or none, is refused at the handshake; the
//! refusal is logged (`warn`) with rustls' reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// The files of `--sge-tls-dir`.
pub const CA_CERT: &str = "ca.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const AGENT_CERT: &str = "agent.pem";
pub const AGENT_KEY: &str = "agent.key";
const FILES: [&str; 5] = [CA_CERT, SERVER_CERT, SERVER_KEY, AGENT_CERT, AGENT_KEY];

/// The common name of the one client certificate issued.
pub const AGENT_CN: &str = "quoalise-agent";
/// The common name of a test CA, followed by a random hex tag: two CAs generated
/// apart never share a name, so a certificate of the other one is refused as of
/// an unknown issuer (not as a bad signature of a CA with the same name).
pub const CA_CN: &str = "enedis-sim SGE test CA";

/// A slow or silent client may hold a handshake this long, no longer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The paths of the test material in `dir`.
#[derive(Debug, Clone)]
pub struct Material {
    pub dir: PathBuf,
}

impl Material {
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.path(CA_CERT)
    }
    pub fn agent_cert(&self) -> PathBuf {
        self.path(AGENT_CERT)
    }
    pub fn agent_key(&self) -> PathBuf {
        self.path(AGENT_KEY)
    }
}

/// Make sure `dir` holds the five files (creating `dir` if needed): reuse them
/// when all are there, else generate a new CA and its three certificates.
pub fn prepare(dir: &Path) -> anyhow::Result<Material> {
    let material = Material {
        dir: dir.to_owned(),
    };
    if FILES.iter().all(|f| material.path(f).is_file()) {
        tracing::info!(dir = %dir.display(), "SGE TLS: reusing the test CA and certificates");
        return Ok(material);
    }
    generate(dir)?;
    tracing::info!(dir = %dir.display(), "SGE TLS: generated a test CA, the server and the agent certificates");
    Ok(material)
}

/// Generate a new test CA, the server certificate and the agent's client
/// certificate into `dir`, replacing what is there.
pub fn generate(dir: &Path) -> anyhow::Result<Material> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let material = Material {
        dir: dir.to_owned(),
    };

    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("{CA_CN} {:08x}", rand::random::<u32>()),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut server = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "enedis-sim SGE");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server.signed_by(&server_key, &ca)?;

    let mut agent = CertificateParams::default();
    agent.distinguished_name.push(DnType::CommonName, AGENT_CN);
    agent.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    agent.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let agent_key = KeyPair::generate()?;
    let agent = agent.signed_by(&agent_key, &ca)?;

    write(&material.path(CA_CERT), &ca.pem(), false)?;
    write(&material.path(SERVER_CERT), &server.pem(), false)?;
    write(
        &material.path(SERVER_KEY),
        &server_key.serialize_pem(),
        true,
    )?;
    write(&material.path(AGENT_CERT), &agent.pem(), false)?;
    write(&material.path(AGENT_KEY), &agent_key.serialize_pem(), true)?;
    Ok(material)
}

fn write(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The listener's rustls configuration: the server certificate of `material`, and
/// a client certificate required, chaining to `material`'s CA.
pub fn server_config(material: &Material) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let ca_path = material.path(CA_CERT);
    let mut roots = RootCertStore::empty();
    for cert in certs(&ca_path)? {
        roots
            .add(cert)
            .with_context(|| format!("{}: not a usable CA", ca_path.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("client certificate verifier")?;
    let key_path = material.path(SERVER_KEY);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("{}: no private key", key_path.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&material.path(SERVER_CERT))?, key)
        .context("server certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: bad PEM", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
    Ok(certs)
}

/// A listener for `axum::serve` yielding only connections whose TLS handshake
/// succeeded, i.e. whose client certificate chains to the test CA. Handshakes run
/// on their own tasks (a slow client holds up no one); a refused one is logged.
pub struct MutualTlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl MutualTlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(16);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(MutualTlsListener { accepted, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            // The server is gone (shut down): stop accepting.
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // As axum's own TcpListener: transient (e.g. too many files).
                    tracing::warn!(error = %e, "SGE TLS: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    tracing::debug!(%peer, "SGE TLS: client certificate accepted");
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "SGE TLS: handshake refused")
                }
                Err(_) => tracing::warn!(%peer, "SGE TLS: handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for MutualTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while this receiver lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
