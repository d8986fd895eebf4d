//! SIGHUP: re-read the configuration from the same sources (file, environment,
//! credentials) and put the new peers, grants and scopes in force, keeping the XMPP
//! session. An invalid configuration is rejected with its reasons and the old
//! one kept. Everything outside `[[peers]]` is read at start-up only (the XMPP
//! account, the Enedis client, the web socket, the store, logging): a change
//! there is reported as needing a restart, and does not apply until then.

use std::path::Path;

use crate::agent::AgentContext;
use crate::config::{Config, ConfigErrors};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new peers are in force.
    Applied {
        peers: usize,
        /// Keys whose new value waits for a restart.
        restart_needed: Vec<&'static str>,
    },
    /// The new configuration is invalid (every problem, one per line); nothing
    /// changed.
    Rejected(String),
}

impl Reloaded {
    /// The systemd status line / log summary.
    pub fn status(&self) -> String {
        match self {
            Reloaded::Applied {
                peers,
                restart_needed,
            } if restart_needed.is_empty() => format!("reloaded: {peers} peers"),
            Reloaded::Applied {
                peers,
                restart_needed,
            } => format!(
                "reloaded: {peers} peers; {} changed and need a restart",
                restart_needed.join(", ")
            ),
            Reloaded::Rejected(reasons) => format!("reload rejected: {reasons}"),
        }
    }
}

/// Loads `path` and applies what can be applied.
pub fn reload(ctx: &AgentContext, path: &Path) -> Reloaded {
    match Config::load(path) {
        Ok(new) => apply(ctx, new),
        Err(errors) => rejected(&errors),
    }
}

fn rejected(errors: &ConfigErrors) -> Reloaded {
    Reloaded::Rejected(errors.to_string())
}

/// Puts `new`'s peers in force; reports the other changes.
pub fn apply(ctx: &AgentContext, new: Config) -> Reloaded {
    let old = ctx.settings();
    let restart_needed = restart_needed(&old.config, &new);
    let peers = new.peers.len();
    // The store's grants first: the audit trail checks grant-based reads against
    // them, so a grant is in the store before it is in force, and out of force
    // (a read then fails the trail) before the configuration drops it.
    if let Err(e) = ctx.store.sync_peer_grants(&new.peers) {
        return Reloaded::Rejected(format!("cannot store the new grants: {e}"));
    }
    match ctx.replace_peers(new.peers) {
        Ok(_) => Reloaded::Applied {
            peers,
            restart_needed,
        },
        Err(e) => Reloaded::Rejected(e.to_string()),
    }
}

/// The keys outside `[[peers]]` whose value differs.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! compare {
        ($($key:literal => $($field:ident).+),* $(,)?) => {
            $(if old.$($field).+ != new.$($field).+ { keys.push($key); })*
        };
    }
    compare! {
        "xmpp.jid" => xmpp.jid,
        "xmpp.password" => xmpp.password,
        "xmpp.server" => xmpp.server,
        "xmpp.ca_file" => xmpp.ca_file,
        "xmpp.allow_plaintext" => xmpp.allow_plaintext,
        "xmpp.request_timeout_secs" => xmpp.request_timeout_secs,
        "xmpp.ping_interval_secs" => xmpp.ping_interval_secs,
        "xmpp.first_session_deadline_secs" => xmpp.first_session_deadline_secs,
    }
    // `[enedis]` may be absent (an SGE-only agent): adding or removing it is a
    // change of its own, then its keys are compared when both have it.
    if old.enedis.is_some() != new.enedis.is_some() {
        keys.push("enedis");
    }
    macro_rules! compare_enedis {
        ($($key:literal => $field:ident),* $(,)?) => {
            if let (Some(old), Some(new)) = (&old.enedis, &new.enedis) {
                $(if old.$field != new.$field { keys.push($key); })*
            }
        };
    }
    compare_enedis! {
        "enedis.api" => api,
        "enedis.base_url" => base_url,
        "enedis.authorize_url" => authorize_url,
        "enedis.client_id" => client_id,
        "enedis.client_secret" => client_secret,
        "enedis.redirect_uri" => redirect_uri,
        "enedis.sandbox" => sandbox,
        "enedis.calls_per_second" => calls_per_second,
        "enedis.calls_per_hour" => calls_per_hour,
        "enedis.connect_timeout_secs" => connect_timeout_secs,
        "enedis.request_timeout_secs" => request_timeout_secs,
        "enedis.max_retries" => max_retries,
        "enedis.quota_wait_secs" => quota_wait_secs,
    }
    compare! {
        "web.listen" => web.listen,
        "web.public_url" => web.public_url,
        "store.path" => store.path,
        "store.url" => store.url,
        "store.ca_file" => store.ca_file,
        "log.format" => log.format,
        "log.level" => log.level,
        "subscriptions.publish_time" => subscriptions.publish_time,
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Config {
        crate::config::for_tests(extra, &[])
    }

    #[test]
    fn changes_outside_peers_are_named() {
        let old = load("");
        assert!(restart_needed(&old, &load("")).is_empty());
        let mut new = load("[log]\nlevel = \"debug\"\n[store]\npath = \"other.db\"");
        new.xmpp.password = crate::config::Secret::new("other");
        new.peers.clear();
        assert_eq!(
            restart_needed(&old, &new),
            ["xmpp.password", "store.path", "log.level"]
        );
    }

    #[test]
    fn adding_or_removing_enedis_is_named_and_its_keys_compared_when_both_have_it() {
        let old = load("");
        let mut sge_only = old.clone();
        sge_only.enedis = None;
        assert_eq!(restart_needed(&old, &sge_only), ["enedis"]);
        assert_eq!(restart_needed(&sge_only, &old), ["enedis"]);
        assert!(restart_needed(&sge_only, &sge_only.clone()).is_empty());
        let mut other = old.clone();
        if let Some(enedis) = &mut other.enedis {
            enedis.quota_wait_secs += 1;
        }
        assert_eq!(restart_needed(&old, &other), ["enedis.quota_wait_secs"]);
    }

    #[test]
    fn the_status_line_says_what_happened() {
        let applied = Reloaded::Applied {
            peers: 2,
            restart_needed: vec!["web.listen"],
        };
        assert_eq!(
            applied.status(),
            "reloaded: 2 peers; web.listen changed and need a restart"
        );
        assert_eq!(
            Reloaded::Rejected("a\nb".into()).status(),
            "reload rejected: a\nb"
        );
    }
}
