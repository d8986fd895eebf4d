//! The `enedis-sim` executable as a user runs it: it prints the address it listens
//! on as its first stdout line, serves, refuses a bad command line, and stops on
//! SIGTERM. Everything else is tested in-process through the harness.

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
