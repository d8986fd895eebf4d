//! Online backup of the store, while the agent keeps running.
//!
//! SQLite's backup API copies the database page by page from a read transaction:
//! in WAL mode a reader never blocks the agent's writes, and the copy is the
//! database as of one commit (every page in one step, so a concurrent commit cannot
//! make it restart). The copy is written next to its destination under a temporary
//! name, switched to a self-contained single file (`journal_mode=DELETE`), checked
//! (`PRAGMA integrity_check`, schema version), flushed to disk and only then renamed
//! into place: a failed or interrupted backup never leaves a file that looks like a
//! good one.
//!
//! The source is opened with a connection of its own that runs no migration: a
//! backup never changes the database it copies.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::Store;
use super::migrations::latest_version;

/// How long a backup retries while the source is locked (a checkpoint in progress).
const BUSY_RETRY: Duration = Duration::from_secs(30);

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub pages: i32,
    pub schema_version: i64,
    /// How many consents the copy holds (a quick sanity figure for the operator).
    pub consents: i64,
    pub duration: Duration,
}

/// Why a backup failed; the destination is left untouched.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the store {0} does not exist")]
    NoSource(PathBuf),
    #[error("{0} already exists: choose a new file name (a backup never overwrites)")]
    Exists(PathBuf),
    #[error("the directory of {0} does not exist")]
    NoDirectory(PathBuf),
    #[error("backup of {path}: cannot {op}: {reason}")]
    Failed {
        path: PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error("the copy failed its integrity check: {0}")]
    Corrupt(String),
    #[error(
        "the store has schema version {found}, newer than this build knows ({known}): use the quoalise-agent that runs it"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error(
        "the store is PostgreSQL ({0}): back it up with PostgreSQL's own tools (pg_dump, or \
         continuous archiving); `store backup` copies SQLite files"
    )]
    Postgres(String),
}

/// Back up the store at `source` into the new file `dest`.
pub fn backup_file(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    if !source.is_file() {
        return Err(BackupError::NoSource(source.to_path_buf()));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let dir = match dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::NoDirectory(dest.to_path_buf()));
    }
    let fail = |op: &'static str| {
        let path = dest.to_path_buf();
        move |e: &dyn std::fmt::Display| BackupError::Failed {
            path,
            op,
            reason: e.to_string(),
        }
    };

    // Read-write without migrations: WAL readers need to write the shared-memory
    // index, and SQLite only reads pages here.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail("open the store")(&e))?;
    src.busy_timeout(BUSY_RETRY)
        .map_err(|e| fail("configure the store connection")(&e))?;
    let found: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| fail("read the schema version")(&e))?;
    if found > latest_version() {
        return Err(BackupError::NewerSchema {
            found,
            known: latest_version(),
        });
    }

    let tmp = dir.join(format!(
        ".{}.partial-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "backup".into()),
        std::process::id()
    ));
    // Whatever happens below, no partial file stays behind.
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    create_private(&tmp).map_err(|e| fail("create the backup file")(&e))?;
    let pages = {
        let mut dst = Connection::open(&tmp).map_err(|e| fail("open the backup file")(&e))?;
        let pages = {
            let backup = Backup::new(&src, &mut dst).map_err(|e| fail("start the backup")(&e))?;
            let deadline = Instant::now() + BUSY_RETRY;
            loop {
                match backup.step(-1).map_err(|e| fail("copy the pages")(&e))? {
                    StepResult::Done => break,
                    StepResult::More => continue,
                    StepResult::Busy | StepResult::Locked if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    StepResult::Busy | StepResult::Locked => {
                        return Err(fail("copy the pages")(&"the store stayed locked for 30 s"));
                    }
                    _ => return Err(fail("copy the pages")(&"unexpected backup step result")),
                }
            }
            backup.progress().pagecount
        };
        // A single self-contained file: no -wal or -shm to carry along.
        let mode: String = dst
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .map_err(|e| fail("switch the copy to a single file")(&e))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(fail("switch the copy to a single file")(&mode));
        }
        check(&dst, dest)?;
        dst.close()
            .map_err(|(_, e)| fail("close the backup file")(&e))?;
        pages
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail("flush the backup file")(&e))?;

    // Reopen the closed file and check it again, as a restore would see it.
    let copy = Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| fail("reopen the backup")(&e))?;
    let (schema_version, consents) = check(&copy, dest)?;
    drop(copy);

    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    std::fs::rename(&tmp, dest).map_err(|e| fail("move the backup into place")(&e))?;
    guard.0 = None;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    let bytes = std::fs::metadata(dest)
        .map(|m| m.len())
        .map_err(|e| fail("read the backup's size")(&e))?;
    Ok(BackupReport {
        path: dest.to_path_buf(),
        bytes,
        pages,
        schema_version,
        consents,
        duration: started.elapsed(),
    })
}

/// Integrity check, schema version and consent count of a copy.
fn check(conn: &Connection, dest: &Path) -> Result<(i64, i64), BackupError> {
    let fail = |op: &'static str, e: rusqlite::Error| BackupError::Failed {
        path: dest.to_path_buf(),
        op,
        reason: e.to_string(),
    };
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| fail("check the copy", e))?;
    let lines = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(|e| fail("check the copy", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail("check the copy", e))?;
    if lines != ["ok"] {
        return Err(BackupError::Corrupt(lines.join("; ")));
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| fail("read the copy's schema version", e))?;
    let consents: i64 = if version >= 1 {
        conn.query_row("SELECT count(*) FROM consents", [], |r| r.get(0))
            .map_err(|e| fail("count the copy's consents", e))?
    } else {
        0
    };
    Ok((version, consents))
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let mut journal = path.clone().into_os_string();
            journal.push("-journal");
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(journal);
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(|_| ())
}

impl Store {
    /// Back up this store into the new file `dest` (see [`backup_file`]).
    pub fn backup_to(&self, dest: &Path) -> Result<BackupReport, BackupError> {
        match self.path() {
            Some(path) => backup_file(path, dest),
            None => Err(BackupError::Postgres(self.describe())),
        }
    }
}
