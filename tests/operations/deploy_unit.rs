//! deploy/quoalise-agent.service: `systemd-analyze verify` accepts it without a
//! single warning, its hardening scores well in `systemd-analyze security`, and it
//! keeps every directive the agent's operation relies on (notify, watchdog,
//! credentials, hardening, restart policy).
//!
//! `verify` checks that the `ExecStart=` binary exists, so the test verifies a copy
//! of the unit, identical but for the binary's path, which points at the binary
//! Cargo built.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const UNIT_NAME: &str = "quoalise-agent.service";
/// Where the Debian package installs the binary.
const INSTALLED_BIN: &str = "/usr/bin/quoalise-agent";

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(UNIT_NAME);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `systemd-analyze ARGS`, failing the test with instructions when the tool
/// is missing.
fn systemd_analyze(args: &[&str]) -> Output {
    match Command::new("systemd-analyze").args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "systemd-analyze not found: install the Debian package `systemd` \
             (scripts/setup-system.sh does, as CI runs it)"
        ),
        Err(e) => panic!("cannot run systemd-analyze: {e}"),
    }
}

/// `text` with the installed binary's path replaced by Cargo's build of it; every
/// other line is kept as it is (hardening included).
fn with_built_binary(text: &str) -> String {
    let exec_starts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec_starts.len(),
        1,
        "one ExecStart= expected: {exec_starts:?}"
    );
    let prefix = format!("ExecStart={INSTALLED_BIN} ");
    assert!(
        exec_starts[0].starts_with(&prefix),
        "ExecStart= must run {INSTALLED_BIN}, where the Debian package installs it: {}",
        exec_starts[0]
    );
    let copy = text.replace(&prefix, &format!("ExecStart={BIN} "));
    assert_eq!(copy.lines().count(), text.lines().count());
    copy
}

/// Writes `text` as quoalise-agent.service in a new temporary directory.
fn write_unit(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Output lines of `systemd-analyze verify` about our unit (warnings about other
/// units of the host are not ours to fix).
fn verify_problems(path: &Path) -> (bool, Vec<String>) {
    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = text
        .lines()
        .filter(|l| l.contains(UNIT_NAME) || l.contains(&*path.to_string_lossy()))
        .map(str::to_owned)
        .collect();
    (out.status.success(), ours)
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_warnings() {
    let (_dir, path) = write_unit(&with_built_binary(&unit_text()));
    let (ok, problems) = verify_problems(&path);
    assert!(ok, "systemd-analyze verify failed: {problems:#?}");
    assert!(
        problems.is_empty(),
        "warnings about the unit: {problems:#?}"
    );
}

/// `verify` exits 0 on an unknown directive and only prints a warning: the test
/// above must therefore look at the output, as this one shows it does.
#[test]
fn a_misspelt_directive_is_caught() {
    let text =
        with_built_binary(&unit_text()).replace("ProtectSystem=strict", "ProtectSytem=strict");
    let (_dir, path) = write_unit(&text);
    let (_, problems) = verify_problems(&path);
    assert!(
        problems
            .iter()
            .any(|l| l.contains("Unknown key 'ProtectSytem'")),
        "{problems:#?}"
    );
}

/// `systemd-analyze security` rates the sandbox from 0 (locked down) to 10; the
/// threshold 2.0 ("OK") fails the test if hardening is weakened.
#[test]
fn hardening_exposure_stays_at_most_2() {
    let (_dir, path) = write_unit(&with_built_binary(&unit_text()));
    let out = systemd_analyze(&[
        "security",
        "--offline=yes",
        "--threshold=20",
        "--no-pager",
        path.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Overall exposure level for quoalise-agent.service"),
        "{text}"
    );
}

/// `(section, key, value)` of every assignment, in order; comments and blank
/// lines skipped.
fn directives(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not an assignment: {line}"));
        out.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    out
}

#[test]
fn the_unit_keeps_every_directive_the_agent_relies_on() {
    let all = directives(&unit_text());
    let values = |section: &str, key: &str| -> Vec<&str> {
        all.iter()
            .filter(|(s, k, _)| s == section && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    };
    let mut missing = Vec::new();
    let mut expect = |section: &str, key: &str, value: &str| {
        if !values(section, key).contains(&value) {
            missing.push(format!(
                "[{section}] {key}={value} (found {:?})",
                values(section, key)
            ));
        }
    };
    // Readiness, reload, watchdog, restart policy.
    expect("Service", "Type", "notify");
    expect("Service", "NotifyAccess", "main");
    expect("Service", "ExecReload", "/bin/kill -HUP $MAINPID");
    expect("Service", "Restart", "on-failure");
    // Identity, state, configuration, credentials.
    expect("Service", "DynamicUser", "yes");
    expect("Service", "StateDirectory", "quoalise-agent");
    expect("Service", "ConfigurationDirectory", "quoalise-agent");
    expect(
        "Service",
        "LoadCredential",
        "xmpp_password:/etc/quoalise-agent/credentials/xmpp_password",
    );
    expect(
        "Service",
        "LoadCredential",
        "enedis_client_secret:/etc/quoalise-agent/credentials/enedis_client_secret",
    );
    // Hardening.
    expect("Service", "ProtectSystem", "strict");
    expect("Service", "ProtectHome", "yes");
    expect("Service", "PrivateTmp", "yes");
    expect("Service", "PrivateDevices", "yes");
    expect("Service", "NoNewPrivileges", "yes");
    expect("Service", "CapabilityBoundingSet", "");
    expect(
        "Service",
        "RestrictAddressFamilies",
        "AF_INET AF_INET6 AF_UNIX",
    );
    expect("Service", "SystemCallFilter", "@system-service");
    expect("Service", "MemoryDenyWriteExecute", "yes");
    expect("Service", "UMask", "0077");
    assert!(
        missing.is_empty(),
        "missing or changed:\n{}",
        missing.join("\n")
    );

    // The agent pings at half WatchdogSec: it must be set, in whole seconds.
    let watchdog = values("Service", "WatchdogSec");
    assert_eq!(watchdog.len(), 1, "WatchdogSec= {watchdog:?}");
    let secs: u64 = watchdog[0].parse().expect("WatchdogSec in seconds");
    assert!((10..=300).contains(&secs), "WatchdogSec={secs}");

    // The config is found where ConfigurationDirectory= puts it.
    let exec = values("Service", "ExecStart");
    assert_eq!(
        exec,
        [format!(
            "{INSTALLED_BIN} --config ${{CONFIGURATION_DIRECTORY}}/config.toml run"
        )]
    );

    // A restart loop is bounded: StartLimit* live in [Unit] (ignored in [Service]).
    let interval = values("Unit", "StartLimitIntervalSec");
    let burst = values("Unit", "StartLimitBurst");
    assert_eq!(
        interval.len(),
        1,
        "[Unit] StartLimitIntervalSec= {interval:?}"
    );
    assert_eq!(burst.len(), 1, "[Unit] StartLimitBurst= {burst:?}");
    assert!(
        burst[0].parse::<u32>().is_ok_and(|b| b > 0),
        "StartLimitBurst={}",
        burst[0]
    );
    assert!(
        interval[0].parse::<u32>().is_ok_and(|i| i > 0),
        "StartLimitIntervalSec={}",
        interval[0]
    );
}
