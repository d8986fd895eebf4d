//! The Debian package, as an admin lives with it: `scripts/package.sh` builds it
//! with cargo-deb, `dpkg` really installs it, upgrades it, removes it and purges
//! it, and the installed files are what deploy/README.md promises.
//!
//! To stay off the machine's own system, `dpkg` works in a scratch root
//! (`--root`, with its own admin directory) and runs the maintainer scripts
//! without chroot (`--force-script-chrootless`, the scripts then see the root in
//! `$DPKG_ROOT`, as `deb-systemd-helper` does). The scratch admin directory knows
//! only the package's dependencies, copied from the host's dpkg database, so the
//! dependency check is dpkg's own. Not being root, dpkg runs under `fakeroot`.
//!
//! To save CI a release build, the package is made from the debug binary Cargo
//! built for the tests (`scripts/package.sh --binary`, cargo-deb `--no-build`,
//! `--fast` compression); everything else in it is what the release package holds.
//! The upgrade installs a second package built the same way with a higher version.
//! No systemd runs here: starting and restarting are left to the snippets'
//! `if [ -d /run/systemd/system ]`, and the unit is checked with
//! `systemd-analyze verify`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");
const PKG: &str = "quoalise-agent";
const CONFIG: &str = "/etc/quoalise-agent/config.toml";
const CREDENTIALS: &str = "/etc/quoalise-agent/credentials";
const UNIT: &str = "/usr/lib/systemd/system/quoalise-agent.service";
const XMPP_PASSWORD: &str = "xmpp-pa55word-in-a-file";
const CLIENT_SECRET: &str = "enedis-s3cret-in-a-file";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` without the caller's `QUOALISE_AGENT*` and `CREDENTIALS_DIRECTORY`
/// variables (those `cmd` sets itself are kept).
fn run(cmd: &mut Command) -> Output {
    let set: Vec<std::ffi::OsString> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if (name.starts_with("QUOALISE_AGENT") || name == "CREDENTIALS_DIRECTORY")
            && !set.contains(&key)
        {
            cmd.env_remove(key);
        }
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{:?} not found: the package test needs dpkg, fakeroot (when not root), \
             cargo-deb (`cargo install --locked cargo-deb`) and systemd-analyze; \
             scripts/setup-system.sh installs them, as CI runs it",
            cmd.get_program()
        ),
        Err(e) => panic!("cannot run {:?}: {e}", cmd.get_program()),
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

fn is_root() -> bool {
    let out = run_ok(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Builds the package of the test binary at `version` in its own directory of
/// `work`, returning the .deb's path (the -dbgsym.ddeb beside it is checked).
fn build_package(work: &Path, version: &str) -> PathBuf {
    let target = work.join(format!("target-{version}"));
    let out = run_ok(
        Command::new(repo().join("scripts/package.sh"))
            .args(["--binary", BIN, "--target-dir"])
            .arg(&target)
            .args(["--deb-version", version, "--fast"]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let made: Vec<PathBuf> = stdout
        .lines()
        .map(|l| PathBuf::from(l.trim()))
        .filter(|p| p.is_file() && p.starts_with(&target))
        .collect();
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_owned();
    let deb = target.join(format!("debian/{PKG}_{version}_{arch}.deb"));
    let ddeb = target.join(format!("debian/{PKG}-dbgsym_{version}_{arch}.ddeb"));
    let mut made = made;
    made.sort();
    assert_eq!(made, [ddeb.clone(), deb.clone()], "{}", text(&out));

    // The binary is stripped; its symbols are in the .ddeb, by build id.
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(!listing.contains("/usr/lib/debug/"), "{listing}");
    let symbols = run_ok(Command::new("dpkg-deb").arg("-c").arg(&ddeb));
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    assert!(
        symbols.contains("./usr/lib/debug/.build-id/") && symbols.contains(".debug"),
        "{symbols}"
    );
    deb
}

/// A scratch root with its own dpkg database.
struct Root {
    dir: tempfile::TempDir,
    fakeroot: bool,
}

impl Root {
    /// A fresh root whose dpkg database holds the host's entries of `depends`
    /// (package names), so that dpkg checks the .deb's dependencies for real.
    fn new(depends: &[String]) -> Root {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("var/lib/dpkg");
        for sub in ["info", "updates"] {
            std::fs::create_dir_all(admin.join(sub)).unwrap();
        }
        std::fs::write(admin.join("available"), "").unwrap();
        let mut status = std::fs::File::create(admin.join("status")).unwrap();
        for name in depends {
            let out = run_ok(Command::new("dpkg-query").args(["-s", name]));
            status.write_all(&out.stdout).unwrap();
            status.write_all(b"\n").unwrap();
            let arch = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Architecture}", name]));
            let arch = String::from_utf8_lossy(&arch.stdout).trim().to_owned();
            let list = if arch == "all" {
                format!("{name}.list")
            } else {
                format!("{name}:{arch}.list")
            };
            std::fs::write(admin.join("info").join(list), "").unwrap();
        }
        Root {
            dir,
            fakeroot: !is_root(),
        }
    }

    /// `abs` (an absolute path of the installed system) inside the root.
    fn path(&self, abs: &str) -> PathBuf {
        self.dir.path().join(abs.trim_start_matches('/'))
    }

    fn dpkg(&self, args: &[&str]) -> Output {
        let mut cmd = if self.fakeroot {
            let mut c = Command::new("fakeroot");
            c.arg("dpkg");
            c
        } else {
            Command::new("dpkg")
        };
        cmd.arg(format!("--root={}", self.dir.path().display()))
            .args(["--force-script-chrootless", "--force-not-root"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null());
        run(&mut cmd)
    }

    fn dpkg_ok(&self, args: &[&str]) -> Output {
        let out = self.dpkg(args);
        assert!(
            out.status.success(),
            "dpkg {args:?} failed:\n{}",
            text(&out)
        );
        out
    }

    /// `${Status}` and `${Version}` of the package in the root's database.
    fn status(&self) -> String {
        let out = run(Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                self.path("/var/lib/dpkg").display()
            ))
            .args(["-W", "-f=${Status} ${Version}", PKG]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The installed binary, run on the installed configuration with the secrets
    /// of the installed credentials directory, as deploy/README.md's `qa` alias.
    fn agent(&self, args: &[&str]) -> Output {
        run(Command::new(self.path("/usr/bin/quoalise-agent"))
            .arg("--config")
            .arg(self.path(CONFIG))
            .args(args)
            .env("CREDENTIALS_DIRECTORY", self.path(CREDENTIALS))
            // The unit's Environment=: the store is in the state directory.
            .env(
                "QUOALISE_AGENT__STORE__PATH",
                self.path("/var/lib/quoalise-agent/agent.db"),
            ))
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The man pages the package must hold: the binary's and one per visible
/// subcommand, nested ones included, from the same clap definition.
fn expected_man_pages() -> Vec<String> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        out.push(format!("{prefix}.1.gz"));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() != "help" {
                walk(sub, &format!("{prefix}-{}", sub.get_name()), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&quoalise_agent::cli::command(), PKG, &mut out);
    out.sort();
    out
}

/// What bash completes after `quoalise-agent WORD`, with the installed script.
fn bash_completes(script: &Path, word: &str) -> Vec<String> {
    let out = run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(
                r#"source "$1" || exit 1
fn=$(complete -p quoalise-agent | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
[ -n "$fn" ] || exit 1
COMP_WORDS=(quoalise-agent "$2"); COMP_CWORD=1
COMP_LINE="quoalise-agent $2"; COMP_POINT=${#COMP_LINE}
"$fn" quoalise-agent "$2" quoalise-agent
printf '%s\n' "${COMPREPLY[@]}""#,
            )
            .arg("bash")
            .arg(script)
            .arg(word),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn write_secret(path: &Path, value: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all(value.as_bytes()).unwrap();
}

fn checks_the_installed_files(root: &Root) {
    // The binary, runnable.
    let bin = root.path("/usr/bin/quoalise-agent");
    assert_eq!(mode(&bin), 0o755);
    let size = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&bin) < size(Path::new(BIN)),
        "the packaged binary must be stripped"
    );
    let version = run_ok(Command::new(&bin).arg("--version"));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("quoalise-agent "));

    // The configuration: a conffile, the commented example reading its secrets
    // from the credentials directory.
    let listed = run_ok(
        Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                root.path("/var/lib/dpkg").display()
            ))
            .args(["-W", "-f=${Conffiles}", PKG]),
    );
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(CONFIG),
        "{CONFIG} must be a conffile: {}",
        text(&listed)
    );
    let config = std::fs::read_to_string(root.path(CONFIG)).unwrap();
    assert_eq!(mode(&root.path(CONFIG)), 0o644);
    assert!(
        config.contains("\npassword_file = \"xmpp_password\"\n"),
        "{config}"
    );
    assert!(config.contains("\nclient_secret_file = \"enedis_client_secret\"\n"));
    assert!(!config.contains("\npassword = ") && !config.contains("\nclient_secret = "));
    assert!(
        config.contains("# Environment overrides"),
        "the example's comments are kept"
    );

    // The credentials directory, root only, made by the postinst.
    assert_eq!(mode(&root.path(CREDENTIALS)), 0o700);

    // The unit, as in deploy/, enabled (deb-systemd-helper, in the root).
    let unit = std::fs::read_to_string(root.path(UNIT)).unwrap();
    assert_eq!(
        unit,
        std::fs::read_to_string(repo().join("deploy/quoalise-agent.service")).unwrap()
    );
    let wants = root.path("/etc/systemd/system/multi-user.target.wants/quoalise-agent.service");
    assert_eq!(std::fs::read_link(&wants).unwrap(), Path::new(UNIT));

    // Docs, where the unit's Documentation= points.
    let doc = root.path("/usr/share/doc/quoalise-agent");
    assert_eq!(
        std::fs::read_to_string(doc.join("README.md")).unwrap(),
        std::fs::read_to_string(repo().join("deploy/README.md")).unwrap()
    );
    assert!(unit.contains("Documentation=file:///usr/share/doc/quoalise-agent/README.md"));
    for f in [
        "copyright",
        "operations.md",
        "agent.md",
        "examples/config.toml",
    ] {
        assert!(doc.join(f).is_file(), "{f} missing from the docs");
    }

    // Man pages: the binary's and each subcommand's, which man renders.
    let man_dir = root.path("/usr/share/man/man1");
    let mut pages: Vec<String> = std::fs::read_dir(&man_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(pages, expected_man_pages());
    for page in &pages {
        let out = run_ok(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(man_dir.join(page))
                .env("MANWIDTH", "80")
                .env("MANPAGER", "cat"),
        );
        assert!(out.stderr.is_empty(), "{page}: {}", text(&out));
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("SYNOPSIS"), "{page}: {shown}");
    }
    let main = run_ok(
        Command::new("man")
            .arg("-l")
            .arg(man_dir.join("quoalise-agent.1.gz"))
            .env("MANWIDTH", "200")
            .env("MANPAGER", "cat"),
    );
    let main = String::from_utf8_lossy(&main.stdout);
    for needle in [
        "check",
        "consents",
        "backup",
        "FILES",
        CONFIG,
        "QUOALISE_AGENT_CONFIG",
    ] {
        assert!(
            main.contains(needle),
            "quoalise-agent(1) lacks {needle}:\n{main}"
        );
    }

    // Completions for the three shells, from the same definition.
    let bash = root.path("/usr/share/bash-completion/completions/quoalise-agent");
    assert_eq!(bash_completes(&bash, "con"), ["consents"]);
    assert_eq!(bash_completes(&bash, "au"), ["audit", "authorize-url"]);
    let zsh =
        std::fs::read_to_string(root.path("/usr/share/zsh/vendor-completions/_quoalise-agent"))
            .unwrap();
    assert!(zsh.starts_with("#compdef quoalise-agent"), "{zsh}");
    let fish = std::fs::read_to_string(
        root.path("/usr/share/fish/vendor_completions.d/quoalise-agent.fish"),
    )
    .unwrap();
    for sub in [
        "check",
        "consents",
        "run",
        "query",
        "audit",
        "backup",
        "authorize-url",
    ] {
        assert!(zsh.contains(&format!("'{sub}:")), "zsh lacks {sub}");
        assert!(fish.contains(&format!("-a \"{sub}\"")), "fish lacks {sub}");
    }
    assert!(!fish.contains("package-files") && !zsh.contains("package-files"));
}

/// `systemd-analyze verify` of the installed unit, without a single warning. The
/// unit names /usr/bin/quoalise-agent, which verify wants to exist on this
/// machine: it checks a copy naming the binary installed in the root instead.
fn verify_installed_unit(root: &Root) {
    let unit = std::fs::read_to_string(root.path(UNIT)).unwrap();
    let installed = root.path("/usr/bin/quoalise-agent");
    let copy = unit.replace(
        "ExecStart=/usr/bin/quoalise-agent ",
        &format!("ExecStart={} ", installed.display()),
    );
    assert_ne!(copy, unit, "ExecStart= must run /usr/bin/quoalise-agent");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("quoalise-agent.service");
    std::fs::write(&path, copy).unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&path));
    let all = text(&out);
    let ours: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("quoalise-agent.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{all}");
}

#[test]
fn the_package_installs_upgrades_removes_and_purges() {
    let work = tempfile::tempdir().unwrap();
    // Both versions at once: each is mostly I/O and compression.
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| build_package(work.path(), "0.1.0-1"));
        let second = build_package(work.path(), "0.1.1-1");
        (first.join().unwrap(), second)
    });

    let depends = run_ok(
        Command::new("dpkg-deb")
            .arg("-f")
            .arg(&first)
            .arg("Depends"),
    );
    let depends: Vec<String> = String::from_utf8_lossy(&depends.stdout)
        .split(',')
        .filter_map(|d| d.split_whitespace().next().map(str::to_owned))
        .collect();
    assert!(depends.iter().any(|d| d == "libc6"), "{depends:?}");
    let root = Root::new(&depends);

    // Install: enabled, not started, and the admin is told what to do.
    let out = root.dpkg_ok(&["-i", first.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("installed and enabled, but not started"),
        "{}",
        text(&out)
    );
    assert_eq!(root.status(), "install ok installed 0.1.0-1");
    checks_the_installed_files(&root);
    verify_installed_unit(&root);

    // The installed example checks once the secrets are given as files, and
    // not before.
    let out = root.agent(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("xmpp_password"), "{}", text(&out));
    write_secret(&root.path(CREDENTIALS).join("xmpp_password"), XMPP_PASSWORD);
    write_secret(
        &root.path(CREDENTIALS).join("enedis_client_secret"),
        CLIENT_SECRET,
    );
    let out = root.agent(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config OK\n");

    // The admin edits the config, the service has a store (where StateDirectory=
    // with DynamicUser= puts it) with a consent in it.
    let config_path = root.path(CONFIG);
    let edited = std::fs::read_to_string(&config_path).unwrap().replace(
        "jid = \"agent@example.org/agent\"",
        "jid = \"bot@admin.example/edited\"",
    );
    assert!(edited.contains("bot@admin.example/edited"));
    std::fs::write(&config_path, &edited).unwrap();
    let private = root.path("/var/lib/private/quoalise-agent");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(
        "private/quoalise-agent",
        root.path("/var/lib/quoalise-agent"),
    )
    .unwrap();
    let out = root.agent(&[
        "consents",
        "add",
        "--owner",
        "app@example.org",
        "--prm",
        "22516914714270",
        "--duration",
        "P1Y",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let consents_before = root.agent(&["consents", "list"]);
    assert!(String::from_utf8_lossy(&consents_before.stdout).contains("22516914714270"));

    // Upgrade: the edited config and the store are kept, nothing is asked.
    let out = root.dpkg_ok(&["-i", second.to_str().unwrap()]);
    assert!(!text(&out).contains("WARNING"), "{}", text(&out));
    assert_eq!(root.status(), "install ok installed 0.1.1-1");
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);
    assert!(
        !root
            .path("/etc/quoalise-agent/config.toml.dpkg-new")
            .exists()
    );
    let consents_after = root.agent(&["consents", "list"]);
    assert_eq!(
        consents_after.stdout,
        consents_before.stdout,
        "{}",
        text(&consents_after)
    );
    assert!(root.agent(&["check"]).status.success());

    // An upgrade to a version whose check fails says so (the edit breaks the JID).
    std::fs::write(
        &config_path,
        edited.replace("bot@admin.example/edited", "no-at-sign"),
    )
    .unwrap();
    let out = root.dpkg_ok(&["-i", second.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("WARNING: /etc/quoalise-agent/config.toml does not pass"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(XMPP_PASSWORD) && !text(&out).contains(CLIENT_SECRET));
    std::fs::write(&config_path, &edited).unwrap();

    // Remove: the program goes, the config, the secrets and the store stay.
    root.dpkg_ok(&["-r", PKG]);
    assert_eq!(root.status(), "deinstall ok config-files 0.1.1-1");
    for gone in [
        "/usr/bin/quoalise-agent",
        UNIT,
        "/usr/share/man/man1/quoalise-agent.1.gz",
    ] {
        assert!(!root.path(gone).exists(), "{gone} left after remove");
    }
    assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);
    assert_eq!(
        std::fs::read_to_string(root.path(CREDENTIALS).join("xmpp_password")).unwrap(),
        XMPP_PASSWORD
    );
    assert!(private.join("agent.db").is_file());

    // Installing again after a remove finds the config, the secrets and the
    // store; the config checks, so the service would be started (with systemd).
    let out = root.dpkg_ok(&["-i", second.to_str().unwrap()]);
    assert!(!text(&out).contains("not started"), "{}", text(&out));
    assert_eq!(root.status(), "install ok installed 0.1.1-1");
    assert_eq!(
        root.agent(&["consents", "list"]).stdout,
        consents_before.stdout
    );
    root.dpkg_ok(&["-r", PKG]);

    // Purge: all of it goes.
    root.dpkg_ok(&["-P", PKG]);
    assert_eq!(root.status(), "");
    for gone in [
        "/etc/quoalise-agent",
        "/var/lib/quoalise-agent",
        "/var/lib/private/quoalise-agent",
        "/etc/systemd/system/multi-user.target.wants/quoalise-agent.service",
    ] {
        assert!(
            std::fs::symlink_metadata(root.path(gone)).is_err(),
            "{gone} left after purge"
        );
    }
}
