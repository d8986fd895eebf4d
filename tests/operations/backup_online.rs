//! `quoalise-agent --config F backup PATH` (the real binary) while another process
//! writes to the store: every backup succeeds, is a consistent snapshot (each
//! consent with all its PRMs, no partial transaction), passes its integrity check,
//! is private (0600), opens as a store, and was made from a configuration whose
//! secrets are not even readable.

use crate::common::config::AgentConfig;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use quoalise_agent::config::ApiGeneration;
use quoalise_agent::quoalise::Prm;
use quoalise_agent::store::{NewConsent, Store};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");

/// A configuration whose secret files do not exist: backup must not need them.
fn config(dir: &Path) -> std::path::PathBuf {
    AgentConfig::new()
        .set("xmpp.password_file", "/nonexistent/xmpp_password")
        .set("enedis.client_secret_file", "/nonexistent/client_secret")
        .set("store.path", "state/agent.db")
        .write(dir)
}

fn backup(config: &Path, dest: &Path) -> std::process::Output {
    std::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("backup")
        .arg(dest)
        .env_remove("QUOALISE_AGENT_CONFIG")
        .env_remove("QUOALISE_AGENT__STORE__PATH")
        .output()
        .unwrap()
}

/// Each consent of the copy has exactly the PRMs its writer gave it (3).
fn consistent(copy: &Store) -> usize {
    let consents = copy.list_consents().unwrap();
    for c in &consents {
        assert_eq!(c.prms.len(), 3, "consent {} is partial in the copy", c.id);
    }
    consents.len()
}

#[test]
fn backups_taken_while_a_writer_runs_are_consistent_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let config = config(dir.path());
    let store = Store::open(dir.path().join("state/agent.db")).unwrap();
    // The check command (which loads everything) fails: the secrets are missing.
    let check = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    assert!(!check.status.success());

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let stop = stop.clone();
        let written = written.clone();
        let path = dir.path().join("state/agent.db");
        std::thread::spawn(move || {
            // Another connection, as another process would have.
            let store = Store::open(path).unwrap();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let prms: Vec<Prm> = (0..3)
                    .map(|i| format!("{:014}", n * 3 + i).parse().unwrap())
                    .collect();
                store
                    .add_consent(
                        &NewConsent {
                            generation: ApiGeneration::Api2026,
                            owner: "app@example.org".into(),
                            prms,
                            autorisation_id: Some(n as i64),
                            valid_from: 0,
                            valid_until: 4_000_000_000,
                        },
                        None,
                    )
                    .unwrap();
                n += 1;
                written.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut counts = Vec::new();
    for i in 0..5 {
        while written.load(Ordering::Relaxed) < (i + 1) * 20 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let dest = dir.path().join(format!("backup-{i}.db"));
        let before = written.load(Ordering::Relaxed);
        let out = backup(&config, &dest);
        let after = written.load(Ordering::Relaxed);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("integrity ok"), "{stdout}");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds tokens: owner only");
        assert!(
            !dir.path().join(format!("backup-{i}.db-wal")).exists(),
            "one self-contained file"
        );
        let copy = Store::open(&dest).unwrap();
        assert_eq!(copy.integrity_check().unwrap(), "ok");
        let n = consistent(&copy);
        assert!(
            (before..=after).contains(&n),
            "the copy holds {n} consents, written {before}..{after} during the backup"
        );
        counts.push(n);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
    println!("backups under a writer held {counts:?} consents");

    // A backup never overwrites, and says why.
    let out = backup(&config, &dir.path().join("backup-0.db"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    // Nor writes into a missing directory, nor leaves a partial file behind.
    let out = backup(&config, &dir.path().join("missing/backup.db"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(store);
}

#[test]
fn backup_of_a_missing_store_is_an_error_not_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let out = backup(&config, &dir.path().join("b.db"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!dir.path().join("state/agent.db").exists());
    // The audit command does not create one either.
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("audit")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no store"));
}
