//! `quoalise-agent package-files DIR` (hidden): writes the man pages and the shell
//! completions of the Debian package, generated from the clap definition
//! ([`super::command`]) by the binary being packaged, so that they always describe
//! the options it really has. `scripts/package.sh` runs it; nothing is fetched.
//!
//! Layout written under `DIR`:
//! - `man/quoalise-agent.1` and one page per subcommand, nested ones included
//!   (`man/quoalise-agent-consents-list.1`), as `git`'s pages are named;
//! - `completions/quoalise-agent.bash`, `completions/_quoalise-agent` (zsh) and
//!   `completions/quoalise-agent.fish`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

use super::BIN_NAME;

/// The hidden subcommand's name (not part of [`super::command`], so neither in
/// the man pages nor in the completions).
pub const SUBCOMMAND: &str = "package-files";

/// Why the files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PackageFilesError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What was written, by kind.
#[derive(Debug, Default)]
pub struct Written {
    pub man_pages: Vec<PathBuf>,
    pub completions: Vec<PathBuf>,
}

/// Sections appended to the binary's own page: where things are, what the
/// environment changes, where to read more.
const MAIN_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/quoalise\-agent/config.toml\fR
The configuration (no secret in it): every key is documented in it. Check it
with \fBquoalise\-agent check\fR.
.TP
\fI/etc/quoalise\-agent/credentials/\fR
The secret files, root only (mode 0700, files 0600): \fIxmpp_password\fR and
\fIenedis_client_secret\fR. The systemd unit hands them to the service with
\fBLoadCredential=\fR.
.TP
\fI/var/lib/quoalise\-agent/agent.db\fR
The store: consents, tokens, audit trail, cache. Back it up with
\fBquoalise\-agent backup\fR.
.TP
\fI/usr/share/doc/quoalise\-agent/README.md\fR
Running the agent under systemd: install, reverse proxy, reload, logs, health
and metrics, backups, upgrades, hardening.
.SH ENVIRONMENT
.TP
\fBQUOALISE_AGENT_CONFIG\fR
The configuration file, when \fB\-\-config\fR is not given.
.TP
\fBQUOALISE_AGENT__\fISECTION\fB__\fIKEY\fR
Overrides one key of the configuration, e.g.
\fBQUOALISE_AGENT__ENEDIS__API=v5\fR.
.TP
\fBCREDENTIALS_DIRECTORY\fR
Where relative \fI*_file\fR secrets are looked up (set by systemd for the
service; as root, point it at \fI/etc/quoalise\-agent/credentials\fR).
.TP
\fBRUST_LOG\fR
Replaces \fBlog.level\fR for one run.
.SH EXIT STATUS
0 on success; 1 when the configuration is invalid or a command fails; 2 on a
usage error.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.exec\fR(5)
"#;

/// Writes the man pages and completions of [`super::command`] under `dir`.
pub fn write(dir: &Path) -> Result<Written, PackageFilesError> {
    let man_dir = dir.join("man");
    let completions_dir = dir.join("completions");
    for path in [&man_dir, &completions_dir] {
        std::fs::create_dir_all(path).map_err(|source| PackageFilesError::CreateDir {
            path: path.clone(),
            source,
        })?;
    }
    let mut written = Written::default();

    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    write_man_pages(&cmd, &man_dir, true, &mut written.man_pages)?;

    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = super::command();
        let path = clap_complete::generate_to(shell, &mut cmd, BIN_NAME, &completions_dir)
            .map_err(|source| PackageFilesError::Write {
                path: completions_dir.join(clap_complete::Generator::file_name(&shell, BIN_NAME)),
                source,
            })?;
        written.completions.push(path);
    }
    Ok(written)
}

/// `cmd`'s page, then one per visible subcommand, recursively.
fn write_man_pages(
    cmd: &clap::Command,
    dir: &Path,
    top: bool,
    out: &mut Vec<PathBuf>,
) -> Result<(), PackageFilesError> {
    let man = clap_mangen::Man::new(cmd.clone())
        .manual("quoalise-agent manual")
        .source(format!("quoalise-agent {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    let mut text = Vec::new();
    let mut render = || -> std::io::Result<()> {
        man.render(&mut text)?;
        if top {
            text.write_all(MAIN_PAGE_EXTRA.as_bytes())?;
        } else {
            writeln!(
                text,
                ".SH SEE ALSO\n\\fB{}\\fR(1)",
                BIN_NAME.replace('-', "\\-")
            )?;
        }
        std::fs::write(&path, &text)
    };
    render().map_err(|source| PackageFilesError::Write {
        path: path.clone(),
        source,
    })?;
    out.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(sub, dir, false, out)?;
    }
    Ok(())
}
