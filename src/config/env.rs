//! Environment overrides: `QUOALISE_AGENT__<SECTION>__<KEY>` replaces a key of the
//! file (an empty variable removes it), checked against the known keys; and
//! `CREDENTIALS_DIRECTORY`, where systemd puts the secret files.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::PathBuf;

use super::tree::{Map, Value};
use super::{CREDENTIALS_DIRECTORY, ENV_PREFIX, Problem, section_keys, section_names};

/// The `QUOALISE_AGENT__*` variables, checked and split into `section.key`.
pub(super) struct EnvOverrides {
    /// (section, key, value) of the non-empty variables.
    set: Vec<(String, String, String)>,
    /// (section, key) of the empty variables: the key is removed from the file's.
    unset: Vec<(String, String)>,
    /// `section.key` → the variable's name, to name it in problems.
    pub(super) origins: HashMap<String, String>,
    pub(super) credentials_directory: Option<PathBuf>,
}

impl EnvOverrides {
    pub(super) fn collect<I, K, V>(env: I, problems: &mut Vec<Problem>) -> EnvOverrides
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let mut overrides = EnvOverrides {
            set: Vec::new(),
            unset: Vec::new(),
            origins: HashMap::new(),
            credentials_directory: None,
        };
        // Sorted, so that problems come in a stable order.
        let vars: BTreeMap<OsString, OsString> =
            env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        for (name, value) in vars {
            if name == CREDENTIALS_DIRECTORY {
                if !value.is_empty() {
                    overrides.credentials_directory = Some(PathBuf::from(value));
                }
                continue;
            }
            let Some(name) = name.to_str() else {
                let lossy = name.to_string_lossy();
                if lossy.starts_with(ENV_PREFIX) {
                    problems.push(Problem {
                        key: String::new(),
                        source: lossy.into_owned(),
                        message: "the variable's name is not valid UTF-8".to_owned(),
                    });
                }
                continue;
            };
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let mut env_problem = |key: String, message: String| {
                problems.push(Problem {
                    key,
                    source: name.to_owned(),
                    message,
                })
            };
            let parts: Vec<&str> = rest.split("__").collect();
            let [section, key] = parts.as_slice() else {
                env_problem(
                    String::new(),
                    format!(
                        "expected a variable named {ENV_PREFIX}<SECTION>__<KEY>, \
                         e.g. {ENV_PREFIX}XMPP__PASSWORD"
                    ),
                );
                continue;
            };
            let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
            if section == "peers" {
                env_problem(
                    "peers".to_owned(),
                    "[[peers]] cannot be set from the environment; list the peers in the \
                     configuration file"
                        .to_owned(),
                );
                continue;
            }
            let Some(known) = section_keys(&section) else {
                env_problem(
                    section,
                    format!("unknown section; the sections are: {}", section_names()),
                );
                continue;
            };
            let dotted = format!("{section}.{key}");
            if !known.contains(&key.as_str()) {
                env_problem(
                    dotted,
                    format!(
                        "unknown key; the keys of [{section}] are: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            let Ok(value) = value.into_string() else {
                env_problem(dotted, "the value is not valid UTF-8".to_owned());
                continue;
            };
            overrides.origins.insert(dotted, name.to_owned());
            if value.is_empty() {
                overrides.unset.push((section, key));
            } else {
                overrides.set.push((section, key, value));
            }
        }
        overrides
    }

    /// Applies the variables to the file's tree: a set variable replaces the key
    /// (as a string: the readers parse booleans and integers from it); an empty one
    /// removes it, so that the environment can switch a secret from `key_file` in the
    /// file to `key` (or back).
    pub(super) fn apply(&self, root: &mut Map) {
        for (section, key, value) in &self.set {
            let table = root
                .entry(section.clone())
                .or_insert_with(|| Value::Table(Map::new()));
            // A section the file gave as something else than a table becomes one.
            if !matches!(table, Value::Table(_)) {
                *table = Value::Table(Map::new());
            }
            if let Value::Table(table) = table {
                table.insert(key.clone(), Value::String(value.clone()));
            }
        }
        for (section, key) in &self.unset {
            if let Some(Value::Table(table)) = root.get_mut(section) {
                table.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_replace_remove_or_are_refused() {
        let mut problems = Vec::new();
        let env = EnvOverrides::collect(
            [
                ("QUOALISE_AGENT__WEB__LISTEN", "[::1]:80"),
                ("QUOALISE_AGENT__XMPP__PASSWORD_FILE", ""),
                ("QUOALISE_AGENT__XMPP__NOPE", "x"),
                (CREDENTIALS_DIRECTORY, "/run/credentials/agent"),
                ("HOME", "/root"),
            ],
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "xmpp.nope");
        assert_eq!(problems[0].source, "QUOALISE_AGENT__XMPP__NOPE");
        assert_eq!(
            env.credentials_directory,
            Some(PathBuf::from("/run/credentials/agent"))
        );
        assert_eq!(
            env.origins.get("xmpp.password_file").map(String::as_str),
            Some("QUOALISE_AGENT__XMPP__PASSWORD_FILE")
        );

        // A section given as something else than a table becomes one.
        let mut root = Map::new();
        root.insert("web".into(), Value::String("x".into()));
        let mut xmpp = Map::new();
        xmpp.insert("password_file".into(), Value::String("f".into()));
        xmpp.insert("jid".into(), Value::String("a@b/c".into()));
        root.insert("xmpp".into(), Value::Table(xmpp));
        env.apply(&mut root);
        let Some(Value::Table(web)) = root.get("web") else {
            panic!("{root:?}");
        };
        assert_eq!(web["listen"], Value::String("[::1]:80".into()));
        let Some(Value::Table(xmpp)) = root.get("xmpp") else {
            panic!("{root:?}");
        };
        assert_eq!(xmpp.keys().collect::<Vec<_>>(), ["jid"]);
    }
}
