//! `quoalise-agent check`, run as the real binary against configuration files and
//! secret files in temporary directories, with a controlled environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_quoalise-agent");

/// Secret values used by the fixtures: none may ever appear in the output.
const XMPP_PASSWORD: &str = "xmpp-pa55word-value";
const CLIENT_SECRET: &str = "enedis-s3cret-value";

/// A valid configuration with both secrets in files next to it.
const VALID: &str = r#"
[xmpp]
jid = "agent@example.org/agent"
password_file = "xmpp_password"
server = "127.0.0.1:5222"

[enedis]
api = "2026"
client_id = "client-id"
client_secret_file = "enedis_client_secret"

[web]
public_url = "https://agent.example.org/dataconnect"

[[peers]]
jid = "app@example.org"
usage_points = ["22516914714270"]
redirect_uris = ["https://app.example.org/linky/"]
"#;

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    /// `text` as config.toml, and the two secret files (mode 0600, trailing newline).
    fn new(text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, text).unwrap();
        let fixture = Fixture { dir, config };
        fixture.secret("xmpp_password", XMPP_PASSWORD, 0o600);
        fixture.secret("enedis_client_secret", CLIENT_SECRET, 0o600);
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn secret(&self, name: &str, value: &str, mode: u32) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn check(&self, env: &[(&str, &str)]) -> Outcome {
        check(&self.config, env)
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "stderr:\n{}", self.stderr);
        assert_eq!(self.stdout, "config OK\n");
        assert_eq!(self.stderr, "");
    }

    /// Exit 1; returns the problem lines (without the final count line). Also
    /// checks that no secret leaked.
    fn assert_failed(&self) -> Vec<String> {
        assert_eq!(
            self.code,
            Some(1),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(self.stdout, "", "nothing on stdout on failure");
        self.assert_no_secret();
        let lines: Vec<&str> = self.stderr.lines().collect();
        let (last, problems) = lines.split_last().expect("some output");
        assert!(last.starts_with("config check failed: "), "{}", self.stderr);
        problems.iter().map(|l| l.to_string()).collect()
    }

    fn assert_no_secret(&self) {
        for secret in [XMPP_PASSWORD, CLIENT_SECRET, "hunter2"] {
            assert!(
                !self.stdout.contains(secret) && !self.stderr.contains(secret),
                "secret {secret:?} leaked:\n{}{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

/// Runs `quoalise-agent --config PATH check` with ONLY the given environment.
fn check(config: &Path, env: &[(&str, &str)]) -> Outcome {
    let output = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .arg("--config")
        .arg(config)
        .arg("check")
        .output()
        .unwrap();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The one problem line about `key`, asserting it names `source`.
fn line_for<'a>(lines: &'a [String], key: &str, source: &str) -> &'a str {
    let needle = format!(": {key}: ");
    let found: Vec<&String> = lines.iter().filter(|l| l.contains(&needle)).collect();
    assert_eq!(found.len(), 1, "one line for {key} in {lines:#?}");
    let line = found[0];
    assert!(line.starts_with(&format!("{source}: {key}: ")), "{line}");
    line
}

fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the fixture");
    text.replacen(from, to, 1)
}

#[test]
fn the_example_config_passes() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    check(&example, &[]).assert_ok();
}

#[test]
fn the_valid_fixture_passes() {
    Fixture::new(VALID).check(&[]).assert_ok();
}

#[test]
fn the_config_path_comes_from_quoalise_agent_config() {
    let f = Fixture::new(VALID);
    let output = Command::new(BIN)
        .env_clear()
        .env("QUOALISE_AGENT_CONFIG", &f.config)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(output.stdout, b"config OK\n");

    let missing = f.path("absent.toml");
    let out = check(&missing, &[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!("{}: cannot read", missing.display())),
        "{}",
        lines[0]
    );
}

#[test]
fn a_jid_without_resource_is_refused() {
    let f = Fixture::new(&replace(
        VALID,
        "agent@example.org/agent",
        "agent@example.org",
    ));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(&lines, "xmpp.jid", &f.config.display().to_string());
    assert!(line.contains("full JID"), "{line}");
}

#[test]
fn a_missing_secret_is_refused() {
    let f = Fixture::new(&replace(VALID, "password_file = \"xmpp_password\"\n", ""));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(&lines, "xmpp.password", &f.config.display().to_string());
    assert!(line.contains("missing"), "{line}");
    assert!(line.contains("xmpp.password_file"), "{line}");
}

#[test]
fn a_world_readable_secret_file_is_refused_without_showing_it() {
    let f = Fixture::new(VALID);
    let secret = f.secret("xmpp_password", XMPP_PASSWORD, 0o644);
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(
        &lines,
        "xmpp.password_file",
        &f.config.display().to_string(),
    );
    assert!(line.contains(&secret.display().to_string()), "{line}");
    assert!(line.contains("0644"), "{line}");
    assert!(line.contains("chmod 600"), "{line}");

    // Group-readable is refused too.
    f.secret("xmpp_password", XMPP_PASSWORD, 0o640);
    let out = f.check(&[]);
    assert!(out.assert_failed()[0].contains("0640"));
}

#[test]
fn an_unknown_api_is_refused_with_the_accepted_values() {
    let f = Fixture::new(&replace(VALID, "api = \"2026\"", "api = \"v6\""));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(&lines, "enedis.api", &f.config.display().to_string());
    for accepted in ["\"v6\"", "\"2026\"", "\"v5\"", "\"v4\"", "\"v3\""] {
        assert!(line.contains(accepted), "{line}");
    }
}

#[test]
fn an_unknown_key_is_refused_without_showing_its_value() {
    let f = Fixture::new(&replace(
        VALID,
        "[xmpp]\n",
        "[xmpp]\npasword = \"hunter2\"\n",
    ));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(&lines, "xmpp.pasword", &f.config.display().to_string());
    assert!(line.contains("unknown key"), "{line}");
    assert!(
        line.contains("password_file"),
        "lists the known keys: {line}"
    );

    let f = Fixture::new(&format!("{VALID}\n[webb]\nlisten = \"x\"\n"));
    let lines = f.check(&[]).assert_failed().join("\n");
    assert!(lines.contains(": webb: unknown section"), "{lines}");
}

#[test]
fn a_secret_given_both_inline_and_as_a_file_is_refused() {
    let f = Fixture::new(&replace(
        VALID,
        "client_secret_file",
        &format!("client_secret = \"{CLIENT_SECRET}\"\nclient_secret_file"),
    ));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = line_for(
        &lines,
        "enedis.client_secret",
        &f.config.display().to_string(),
    );
    assert!(line.contains("both"), "{line}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let mut text = replace(VALID, "agent@example.org/agent", "not a jid");
    text = replace(&text, "api = \"2026\"", "api = \"v9\"");
    text = replace(&text, "client_id = \"client-id\"\n", "");
    text = replace(&text, "https://agent.example.org/dataconnect", "ftp://x");
    text = replace(&text, "\"22516914714270\"", "\"22516914714270\", \"1234\"");
    text.push_str("\n[[peers]]\njid = \"App@Example.org/phone\"\n");
    let f = Fixture::new(&text);
    f.secret("enedis_client_secret", CLIENT_SECRET, 0o604);
    let out = f.check(&[]);
    let lines = out.assert_failed();
    let file = f.config.display().to_string();
    for key in [
        "xmpp.jid",
        "enedis.api",
        "enedis.client_id",
        "enedis.client_secret_file",
        "web.public_url",
        "peers[0].usage_points[1]",
        "peers[1].jid",
    ] {
        line_for(&lines, key, &file);
    }
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert!(out.stderr.ends_with("config check failed: 7 problems\n"));
}

#[test]
fn unknown_scope_names_are_refused_with_the_key_the_file_and_the_known_scopes() {
    let text = format!(
        "{VALID}scopes = [\"daily\", \"load-curve\"]\n\n[[peers]]\njid = \"other@example.org\"\n\
         scopes = [\"identity\", \"everything\", \"identity\"]\n"
    );
    let f = Fixture::new(&text);
    let lines = f.check(&[]).assert_failed();
    let file = f.config.display().to_string();
    let known = "the scopes are: load_curve, daily, max_power, index, contract, identity";
    assert_eq!(
        line_for(&lines, "peers[0].scopes[1]", &file),
        format!("{file}: peers[0].scopes[1]: unknown scope \"load-curve\"; {known}")
    );
    assert_eq!(
        line_for(&lines, "peers[1].scopes[1]", &file),
        format!("{file}: peers[1].scopes[1]: unknown scope \"everything\"; {known}")
    );
    assert!(
        line_for(&lines, "peers[1].scopes[2]", &file).ends_with("scope identity is listed twice")
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");

    // Known names, and none at all, pass.
    let valid = format!(
        "{VALID}scopes = [\"daily\", \"identity\"]\n\n[[peers]]\njid = \"other@example.org\"\n\
         scopes = []\n"
    );
    Fixture::new(&valid).check(&[]).assert_ok();
}

#[test]
fn peer_problems_name_the_entry() {
    let text = format!(
        "{VALID}\n[[peers]]\njid = \"APP@example.org\"\n\n[[peers]]\njid = \"other@example.org\"\n\
         usage_points = [\"2251691471427x\"]\nredirect_uris = [\"http://app.example.org/\", \
         \"http://127.0.0.1:8000/back\"]\n"
    );
    let f = Fixture::new(&text);
    let lines = f.check(&[]).assert_failed();
    let file = f.config.display().to_string();
    assert!(line_for(&lines, "peers[1].jid", &file).contains("already listed as peers[0].jid"));
    assert!(
        line_for(&lines, "peers[2].usage_points[0]", &file).contains("only digits"),
        "the PRM parser's own words"
    );
    assert!(line_for(&lines, "peers[2].redirect_uris[0]", &file).contains("https"));
    assert_eq!(lines.len(), 3, "http on 127.0.0.1 is allowed: {lines:#?}");
}

#[test]
fn relative_secret_files_are_read_from_credentials_directory() {
    let f = Fixture::new(VALID);
    let creds = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("xmpp_password", XMPP_PASSWORD),
        ("enedis_client_secret", CLIENT_SECRET),
    ] {
        std::fs::remove_file(f.path(name)).unwrap();
        let path = creds.path().join(name);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let creds_dir = creds.path().to_str().unwrap();
    f.check(&[("CREDENTIALS_DIRECTORY", creds_dir)]).assert_ok();

    // Without the variable they are looked for next to the config, and are not there.
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let line = line_for(
        &lines,
        "xmpp.password_file",
        &f.config.display().to_string(),
    );
    assert!(
        line.contains(&f.path("xmpp_password").display().to_string()),
        "{line}"
    );
}

#[test]
fn environment_variables_override_the_file() {
    // A broken file fixed from the environment.
    let f = Fixture::new(&replace(VALID, "api = \"2026\"", "api = \"v9\""));
    f.check(&[]).assert_failed();
    f.check(&[("QUOALISE_AGENT__ENEDIS__API", "v5")])
        .assert_ok();

    // A key with underscores: the variable's file is the one read (and refused).
    let f = Fixture::new(VALID);
    let open = f.secret("open_secret", CLIENT_SECRET, 0o644);
    let var = "QUOALISE_AGENT__ENEDIS__CLIENT_SECRET_FILE";
    let out = f.check(&[(var, open.to_str().unwrap())]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(line_for(&lines, "enedis.client_secret_file", var).contains("open_secret"));

    // allow_plaintext needs a loopback server: both keys from the environment.
    let f = Fixture::new(&replace(VALID, "server = \"127.0.0.1:5222\"\n", ""));
    let plain = ("QUOALISE_AGENT__XMPP__ALLOW_PLAINTEXT", "true");
    let out = f.check(&[plain]);
    let lines = out.assert_failed();
    assert!(
        lines[0].contains("QUOALISE_AGENT__XMPP__ALLOW_PLAINTEXT"),
        "{lines:#?}"
    );
    f.check(&[plain, ("QUOALISE_AGENT__XMPP__SERVER", "[::1]:5222")])
        .assert_ok();

    // An inline secret from the environment replaces the file's *_file once that is emptied.
    let f = Fixture::new(VALID);
    let inline = ("QUOALISE_AGENT__XMPP__PASSWORD", XMPP_PASSWORD);
    let lines_out = f.check(&[inline]);
    let lines = lines_out.assert_failed();
    assert!(
        lines[0].starts_with(&format!(
            "QUOALISE_AGENT__XMPP__PASSWORD and {}: xmpp.password: both",
            f.config.display()
        )),
        "{lines:#?}"
    );
    f.check(&[inline, ("QUOALISE_AGENT__XMPP__PASSWORD_FILE", "")])
        .assert_ok();
}

#[test]
fn a_bad_environment_value_names_the_variable() {
    let f = Fixture::new(VALID);
    let out = f.check(&[
        ("QUOALISE_AGENT__XMPP__PING_INTERVAL_SECS", "soon"),
        ("QUOALISE_AGENT__WEB__LISTEN", "localhost:8080"),
        ("QUOALISE_AGENT__ENEDIS__SANDBOX", "maybe"),
        ("QUOALISE_AGENT__ENEDIS__CLIENTSECRET", "hunter2"),
        ("QUOALISE_AGENT__PEERS__JID", "x@example.org"),
        ("QUOALISE_AGENT__XMPP", "x"),
    ]);
    let lines = out.assert_failed();
    line_for(
        &lines,
        "xmpp.ping_interval_secs",
        "QUOALISE_AGENT__XMPP__PING_INTERVAL_SECS",
    );
    line_for(&lines, "web.listen", "QUOALISE_AGENT__WEB__LISTEN");
    line_for(&lines, "enedis.sandbox", "QUOALISE_AGENT__ENEDIS__SANDBOX");
    assert!(
        line_for(
            &lines,
            "enedis.clientsecret",
            "QUOALISE_AGENT__ENEDIS__CLIENTSECRET"
        )
        .contains("unknown key")
    );
    assert!(
        line_for(&lines, "peers", "QUOALISE_AGENT__PEERS__JID")
            .contains("cannot be set from the environment")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("QUOALISE_AGENT__XMPP: expected"))
    );
    assert_eq!(lines.len(), 6, "{lines:#?}");
}

#[test]
fn a_syntax_error_on_a_secret_line_does_not_quote_it() {
    let f = Fixture::new(&replace(
        VALID,
        "password_file = \"xmpp_password\"",
        "password = \"hunter2",
    ));
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: TOML syntax error at line 4",
            f.config.display()
        )),
        "{}",
        lines[0]
    );
}

#[test]
fn secrets_never_appear_in_failures() {
    // Each breaks the config around a secret; assert_failed checks for leaks.
    let cases = [
        // Wrong type for an inline secret.
        replace(
            VALID,
            "password_file = \"xmpp_password\"",
            "password = [\"hunter2\"]",
        ),
        // A secret under a misspelt key, in a peer entry.
        replace(
            VALID,
            "jid = \"app@example.org\"",
            "jid = \"app@example.org\"\nsecret = \"hunter2\"",
        ),
        // The secret file given where a path to a PEM is expected.
        replace(VALID, "[xmpp]\n", "[xmpp]\nca_file = \"xmpp_password\"\n"),
    ];
    for text in cases {
        Fixture::new(&text).check(&[]).assert_failed();
    }
    // A secret file that is not UTF-8 is refused without being quoted.
    let f = Fixture::new(VALID);
    std::fs::write(f.path("xmpp_password"), b"hunter2\xff\n").unwrap();
    let lines = f.check(&[]).assert_failed();
    assert!(lines[0].contains("not valid UTF-8"), "{lines:#?}");
}

/// Data Connect, SGE or both: an agent with `[sge]` needs no `[enedis]`; with
/// neither, `check` names both sections in one problem.
#[test]
fn sge_alone_passes_and_neither_upstream_is_one_problem_naming_both() {
    let without = replace(
        VALID,
        "[enedis]\napi = \"2026\"\nclient_id = \"client-id\"\nclient_secret_file = \"enedis_client_secret\"\n",
        "",
    );
    let f = Fixture::new(&without);
    let out = f.check(&[]);
    let lines = out.assert_failed();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let prefix = format!(
        "{}: neither [enedis] nor [sge] is configured",
        f.config.display()
    );
    assert!(lines[0].starts_with(&prefix), "{}", lines[0]);
    assert!(lines[0].contains("give at least one"), "{}", lines[0]);

    // A real client certificate and key: check opens them as the agent would.
    let tls = enedis_sim::sge::tls::generate(&f.path("sge")).unwrap();
    let sge = format!(
        "{without}\n[sge]\nendpoint = \"https://sge-homologation-ws.enedis.fr\"\n\
         certificate_file = \"{}\"\nkey_file = \"{}\"\n\
         login = \"ops@example.org\"\ncontract_id = \"1234567\"\n",
        tls.agent_cert().display(),
        tls.agent_key().display()
    );
    std::fs::write(&f.config, sge).unwrap();
    f.check(&[]).assert_ok();
}
