//! Secrets: a type that never prints its value, and secret files (the `*_file`
//! keys, looked up in systemd's `$CREDENTIALS_DIRECTORY` when relative), refused when
//! others may read them.

use std::path::{Path, PathBuf};

use super::reader::{Reader, Table, non_empty_string};
use super::tree::Value;

/// A secret value: never printed, in `Debug`, `Display` or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is sent where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Reads a secret file: refused when group or others may access it; one trailing
/// newline trimmed. The error never contains the file's content.
fn read_secret_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;

    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("secret file {shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "secret file {shown} is accessible by group or others (mode {mode:04o}); make it \
             readable by its owner only: chmod 600 {shown}"
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read secret file {shown}: {e}"))?;
    // The UTF-8 error would carry the bytes: drop it.
    let mut secret =
        String::from_utf8(bytes).map_err(|_| format!("secret file {shown} is not valid UTF-8"))?;
    if secret.ends_with("\r\n") {
        secret.truncate(secret.len() - 2);
    } else if secret.ends_with('\n') {
        secret.truncate(secret.len() - 1);
    }
    if secret.is_empty() {
        return Err(format!("secret file {shown} is empty"));
    }
    Ok(secret)
}

impl Reader {
    /// A secret given as `name = "…"` or `name_file = "…"`, exactly one of them.
    pub(super) fn secret(&mut self, table: &mut Table, name: &str) -> Secret {
        let key = table.key(name);
        let file_key = table.key(&format!("{name}_file"));
        let problems = self.problems.len();
        match self.optional_secret(table, name) {
            Some(secret) => secret,
            None => {
                // Set but unusable: that problem is enough.
                if self.problems.len() == problems {
                    self.problem_keys(
                        &key,
                        &[&key, &file_key],
                        format!(
                            "missing: set {key} = \"…\" or {file_key} = \"<file>\" (a relative \
                             file name is looked up in $CREDENTIALS_DIRECTORY when set, \
                             otherwise next to the configuration file)"
                        ),
                    );
                }
                Secret::new(String::new())
            }
        }
    }

    /// A secret that may be left out: `None` when neither `name` nor `name_file`
    /// is set (or when the one set is unusable, with a problem recorded).
    pub(super) fn optional_secret(&mut self, table: &mut Table, name: &str) -> Option<Secret> {
        let file_name = format!("{name}_file");
        let key = table.key(name);
        let file_key = table.key(&file_name);
        let inline = table.take(name);
        let file = table.take(&file_name);
        match (inline, file) {
            (Some(_), Some(_)) => self.problem_keys(
                &key,
                &[&key, &file_key],
                format!("both {key} and {file_key} are set; keep only one"),
            ),
            (None, None) => return None,
            // The value itself is never quoted in a problem.
            (Some(value), None) => match value {
                Value::String(s) if s.is_empty() => {
                    self.problem(&key, "is empty; expected the secret")
                }
                Value::String(s) => return Some(Secret::new(s)),
                other => self.problem(&key, format!("expected a string, got {}", other.describe())),
            },
            (None, Some(value)) => {
                if let Some(file) = non_empty_string(self, &file_key, value) {
                    let path = self.secret_path(&file);
                    match read_secret_file(&path) {
                        Ok(secret) => return Some(Secret::new(secret)),
                        Err(message) => self.problem(&file_key, message),
                    }
                }
            }
        }
        None
    }

    /// A relative secret file is looked up in `$CREDENTIALS_DIRECTORY` when set,
    /// otherwise next to the configuration file.
    pub(super) fn secret_path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        if path.is_absolute() {
            path.to_path_buf()
        } else if let Some(dir) = &self.credentials_directory {
            dir.join(path)
        } else {
            self.base_dir.join(path)
        }
    }
}
