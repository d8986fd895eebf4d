//! The `enedis-sim` executable as a user runs it: it prints the address it listens
//! on as its first stdout line, serves, refuses a bad command line, and stops on
//! SIGTERM; with `--sge-listen`, the SGE address as its second line, its TLS
//! material written and reused across restarts. Everything else is tested
//! in-process through the harness.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The child, killed on Drop if a test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enedis-sim"));
    command
        .env_remove("ENEDIS_SIM_CLIENT_SECRET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    command
}

#[tokio::test]
async fn prints_its_address_serves_and_stops_on_sigterm() {
    let mut child = Running(
        command()
            .args(["--listen", "127.0.0.1:0", "--today", "2026-10-04"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn enedis-sim"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("reader thread")
    .expect("first stdout line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"));
    let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p != 0), "the real bound port: {addr}");

    let response = reqwest::Client::new()
        .post(format!("http://{addr}/oauth2/v3/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", enedis_sim::DEFAULT_CLIENT_ID),
            ("client_secret", enedis_sim::DEFAULT_CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status after SIGTERM: {exit}");
}

#[test]
fn refuses_a_bad_command_line() {
    for args in [
        &["--listen", "127.0.0.1:0", "--token-ttl", "0"][..],
        &["--listen", "127.0.0.1:0", "--today", "2026-13-01"][..],
        &["--today", "2026-10-04"][..],
    ] {
        let out = command().args(args).output().expect("run enedis-sim");
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

/// Start the binary with an SGE listener on `dir`; its two stdout lines' addresses.
async fn start_sge(dir: &std::path::Path) -> (Running, String, String) {
    let mut child = Running(
        command()
            .args(["--listen", "127.0.0.1:0", "--today", "2026-10-04"])
            .args(["--sge-listen", "127.0.0.1:0", "--sge-tls-dir"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn enedis-sim"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        let mut second = String::new();
        reader.read_line(&mut first)?;
        reader.read_line(&mut second)?;
        Ok::<_, std::io::Error>((first, second))
    })
    .await
    .expect("reader thread")
    .expect("two stdout lines");
    let main = lines
        .0
        .trim()
        .strip_prefix("listening on ")
        .map(str::to_owned);
    let sge = lines
        .1
        .trim()
        .strip_prefix("sge listening on ")
        .map(str::to_owned);
    match (main, sge) {
        (Some(main), Some(sge)) => (child, main, sge),
        _ => panic!("stdout lines {lines:?}"),
    }
}

/// The client an agent configures from the files: `ca.pem` as the only root,
/// `agent.pem` and `agent.key` as its identity.
fn agent_client(dir: &std::path::Path) -> reqwest::Client {
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    let mut identity = std::fs::read(dir.join("agent.pem")).unwrap();
    identity.extend(std::fs::read(dir.join("agent.key")).unwrap());
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .identity(reqwest::Identity::from_pem(&identity).unwrap())
        .build()
        .unwrap()
}

async fn cdtc(client: &reqwest::Client, sge: &str) -> (u16, String) {
    let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><c:consulterDonneesTechniquesContractuelles xmlns:c="http://www.enedis.fr/sge/b2b/services/consulterdonneestechniquescontractuelles/v1.0"><pointId>09111642617347</pointId><loginUtilisateur>demo@example.org</loginUtilisateur><autorisationClient>true</autorisationClient></c:consulterDonneesTechniquesContractuelles></s:Body></s:Envelope>"#;
    let response = client
        .post(format!(
            "https://{sge}/ConsultationDonneesTechniquesContractuelles/v1.0"
        ))
        .header("content-type", "text/xml; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("SGE call over mutual TLS");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn sge_listener_writes_its_material_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("sge-tls");
    let (first, _, sge) = start_sge(&tls).await;
    for file in [
        "ca.pem",
        "server.pem",
        "server.key",
        "agent.pem",
        "agent.key",
    ] {
        assert!(tls.join(file).is_file(), "{file}");
    }
    let ca = std::fs::read(tls.join("ca.pem")).unwrap();
    let client = agent_client(&tls);
    let (status, body) = cdtc(&client, &sge).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<point id=\"09111642617347\">"), "{body}");
    drop(first);
    // A restart on the same directory reuses the material: the agent configured
    // once keeps working.
    let (_second, _, sge) = start_sge(&tls).await;
    assert_eq!(std::fs::read(tls.join("ca.pem")).unwrap(), ca);
    let (status, body) = cdtc(&client, &sge).await;
    assert_eq!(status, 200, "{body}");
}
