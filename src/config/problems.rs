//! What `quoalise-agent check` reports: every problem of a configuration, each with
//! its key and the source of its value (the file or an environment variable), never
//! quoting a secret.

use std::fmt;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, dotted, with array indices (`xmpp.jid`, `peers[1].usage_points[0]`);
    /// empty when the problem is about the file as a whole.
    pub key: String,
    /// Where the value came from: the file's path or the environment variable's name.
    pub source: String,
    /// What is wrong and what is expected. Never contains a secret.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.message)
        }
    }
}

/// Every problem found while loading the configuration; displays one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_display_one_per_line_with_source_and_key() {
        let errors = ConfigErrors {
            problems: vec![
                Problem {
                    key: "xmpp.jid".into(),
                    source: "/etc/a.toml".into(),
                    message: "bad".into(),
                },
                Problem {
                    key: String::new(),
                    source: "/etc/a.toml".into(),
                    message: "worse".into(),
                },
            ],
        };
        assert_eq!(
            errors.to_string(),
            "/etc/a.toml: xmpp.jid: bad\n/etc/a.toml: worse"
        );
    }
}
