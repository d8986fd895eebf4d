//! What `logging::init` writes to stderr, in a real process: each test runs one
//! of the `#[ignore]`d "child" tests of this file in a child process (the logger
//! is process-wide and can be set up only once) and reads its stderr.

use std::process::Command;

use quoalise_agent::config::Secret;
use quoalise_agent::logging::{self, LogFormat, RequestLog};
use quoalise_agent::quoalise::Prm;
use quoalise_agent::time::Window;

const CHILD: &str = "QUOALISE_LOGGING_TEST_CHILD";
const SECRET: &str = "s3cr3t-token-value";

/// Runs child test `name` with `env` (RUST_LOG, JOURNAL_STREAM removed unless
/// given) and returns its stderr, after checking it succeeded.
fn child_stderr(name: &str, env: &[(&str, &str)]) -> String {
    // The harness knows a test by its path inside the test crate.
    let exact = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    };
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        &exact,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .env_remove("RUST_LOG")
    .env_remove("JOURNAL_STREAM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "child {name} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// The lines a child logs; called by each child after `init`.
fn log_sample_lines() {
    tracing::debug!(target: "quoalise_agent::store", "debug line");
    tracing::info!(target: "quoalise_agent::xmpp", "session up");
    tracing::warn!(target: "quoalise_agent::upstream", client_secret = ?Secret::new(SECRET), "token refused");

    let mut req = RequestLog::start("app@example.org/linky", "get_history");
    let _entered = req.span().entered();
    req.prm(&"22516914714270".parse::<Prm>().unwrap());
    req.window(&Window {
        start: 1_769_900_400, // 2026-02-01T00:00:00+01:00
        end: 1_772_319_600,   // 2026-03-01T00:00:00+01:00
    });
    req.upstream_calls(2);
    tracing::info!(target: "quoalise_agent::upstream", "inside the request");
    req.finish("ok");
    drop(_entered);

    // A request whose handling was dropped before it finished.
    let cancelled = RequestLog::start("other@example.org/r\nINFO forged", "get_history");
    drop(cancelled);
}

fn child_init(format: LogFormat, level: &str) {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
    }
    logging::init(format, level).unwrap();
    log_sample_lines();
}

#[test]
#[ignore = "child process of text_lines_are_human_and_filtered"]
fn child_text_info() {
    child_init(LogFormat::Text, "info");
}

#[test]
fn text_lines_are_human_and_filtered() {
    let stderr = child_stderr("child_text_info", &[]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(!stderr.contains("debug line"), "{stderr}");
    // Not a terminal: no colour codes.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    // Not under journald: each line starts with an RFC 3339 UTC timestamp.
    for line in &lines {
        let stamp = line.split_whitespace().next().unwrap();
        assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{line}");
    }
    assert!(
        lines[0].ends_with(" INFO quoalise_agent::xmpp: session up"),
        "{stderr}"
    );
    assert!(
        lines[1].ends_with(" WARN quoalise_agent::upstream: token refused client_secret=***"),
        "{stderr}"
    );
    assert!(
        lines[2].ends_with(
            " INFO request{peer=app@example.org/linky command=get_history}: \
             quoalise_agent::upstream: inside the request"
        ),
        "{stderr}"
    );
    let request = lines[3];
    let fields = request
        .split_once("quoalise_agent::request: request ")
        .unwrap_or_else(|| panic!("not a request line: {request}"))
        .1;
    let (fixed, duration) = fields.rsplit_once(" duration_ms=").unwrap();
    assert_eq!(
        fixed,
        "peer=app@example.org/linky command=get_history prm=22516914714270 \
         range=2026-01-31T23:00:00Z/2026-02-28T23:00:00Z outcome=ok upstream_calls=2"
    );
    let ms: f64 = duration.parse().unwrap();
    assert!((0.0..60_000.0).contains(&ms), "{request}");
    // The forged newline stayed inside its field.
    assert!(
        lines[4].contains(
            "request peer=other@example.org/r\\nINFO forged command=get_history prm=- range=- \
             outcome=cancelled upstream_calls=0 duration_ms="
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET));
}

#[test]
#[ignore = "child process of json_lines_are_one_object_each"]
fn child_json_info() {
    child_init(LogFormat::Json, "info");
}

#[test]
fn json_lines_are_one_object_each() {
    let stderr = child_stderr("child_json_info", &[]);
    let objects: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(objects.len(), 5, "{stderr}");
    for o in &objects {
        assert!(
            o["timestamp"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .is_ok()
        );
    }
    assert_eq!(objects[0]["level"], "INFO");
    assert_eq!(objects[0]["message"], "session up");
    assert_eq!(objects[0]["target"], "quoalise_agent::xmpp");
    assert_eq!(objects[1]["client_secret"], "***");
    assert_eq!(objects[2]["span"]["peer"], "app@example.org/linky");
    assert_eq!(objects[2]["span"]["command"], "get_history");

    let r = &objects[3];
    assert_eq!(r["target"], logging::REQUEST_TARGET);
    assert_eq!(r["message"], "request");
    assert_eq!(r["peer"], "app@example.org/linky");
    assert_eq!(r["command"], "get_history");
    assert_eq!(r["prm"], "22516914714270");
    assert_eq!(r["range"], "2026-01-31T23:00:00Z/2026-02-28T23:00:00Z");
    assert_eq!(r["outcome"], "ok");
    assert_eq!(r["upstream_calls"], 2);
    assert!(r["duration_ms"].as_f64().unwrap() >= 0.0);

    let c = &objects[4];
    assert_eq!(c["outcome"], "cancelled");
    assert_eq!(c["prm"], "-");
    assert_eq!(c["upstream_calls"], 0);
    assert!(!stderr.contains(SECRET));
}

#[test]
#[ignore = "child process of rust_log_overrides_the_configured_level"]
fn child_text_warn() {
    child_init(LogFormat::Text, "warn");
}

#[test]
fn rust_log_overrides_the_configured_level() {
    // Configured level alone: only the warning.
    let stderr = child_stderr("child_text_warn", &[]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("token refused"));

    // RUST_LOG wins: debug of the store, and request lines only.
    let stderr = child_stderr(
        "child_text_warn",
        &[(
            "RUST_LOG",
            "quoalise_agent::store=debug,quoalise_agent::request=info",
        )],
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with("DEBUG quoalise_agent::store: debug line"),
        "{stderr}"
    );
    assert!(lines[1].contains("quoalise_agent::request: request peer=app@"));
    assert!(lines[2].contains("outcome=cancelled"));
}

#[test]
#[ignore = "child process of under_journald_text_lines_have_no_timestamp"]
fn child_journal() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
    }
    // Point JOURNAL_STREAM at our real stderr, as systemd does.
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().unwrap();
    let meta = std::fs::File::from(fd).metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    // Only this child's single thread reads the environment at this point.
    unsafe { std::env::set_var("JOURNAL_STREAM", stream) };
    logging::init(LogFormat::Text, "info").unwrap();
    tracing::info!(target: "quoalise_agent::xmpp", "session up");
}

#[test]
fn under_journald_text_lines_have_no_timestamp() {
    let stderr = child_stderr("child_journal", &[]);
    assert_eq!(stderr, " INFO quoalise_agent::xmpp: session up\n");
    // A JOURNAL_STREAM naming another stream (inherited by a child of the
    // service, say) does not count: timestamps stay.
    let stderr = child_stderr("child_text_info", &[("JOURNAL_STREAM", "1:1")]);
    let first = stderr.lines().next().unwrap();
    assert!(
        first
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{stderr}"
    );
}

#[test]
#[ignore = "child process of init_refuses_a_bad_rust_log_and_a_second_call"]
fn child_init_errors() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful as a child: `cargo test -- --include-ignored` skips it
    }
    let e = logging::init(LogFormat::Text, "info").unwrap_err();
    eprintln!("first: {e}");
    // The refused filter installed nothing: with RUST_LOG gone, init works once,
    // and a second call is refused. Only this child's single thread reads the
    // environment here.
    unsafe { std::env::remove_var("RUST_LOG") };
    logging::init(LogFormat::Text, "info").unwrap();
    let e = logging::init(LogFormat::Json, "info").unwrap_err();
    eprintln!("second: {e}");
}

#[test]
fn init_refuses_a_bad_rust_log_and_a_second_call() {
    let stderr = child_stderr("child_init_errors", &[("RUST_LOG", "info,,x=nope")]);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with("first: invalid log filter in RUST_LOG (\"info,,x=nope\"): "),
        "{stderr}"
    );
    assert_eq!(
        lines[1],
        "second: logging was already set up in this process"
    );
}
