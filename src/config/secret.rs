//! Secrets: a type that never prints its value, and secret files (the `*_file`
//! keys, looked up in systemd's `$CREDENTIALS_DIRECTORY` when relative), refused when
//! others may read them.

use std::path::Path;

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
pub(super) fn read_secret_file(path: &Path) -> Result<String, String> {
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
