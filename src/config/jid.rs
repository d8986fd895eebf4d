//! The one JID normaliser: peers, the agent's own JID, the allow-list and the
//! command line all compare JIDs in the form it gives (RFC 7622, root dot removed).

use xmpp_parsers::jid::Jid;

/// The bare JID of `jid`, normalised per RFC 7622 (stringprep: localpart and domain
/// case-folded, a final root dot removed): the form in which peers are compared.
/// A resource, if any, is dropped.
pub fn normalize_bare_jid(jid: &str) -> Result<String, xmpp_parsers::jid::Error> {
    Ok(bare_string(&Jid::new(jid)?))
}

pub(super) fn bare_string(jid: &Jid) -> String {
    // The jid crate keeps a final root dot when nothing else in the JID changed;
    // RFC 7622 section 3.2 says to remove it, so two spellings compare equal.
    let domain = jid.domain().as_str();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    match jid.node() {
        Some(node) => format!("{}@{domain}", node.as_str()),
        None => domain.to_owned(),
    }
}

/// `agent@example.org./agent` → `agent@example.org/agent`: the jid crate keeps
/// the root dot of a full JID (see [`bare_string`]).
pub(super) fn strip_root_dot(full: &str) -> String {
    match full.split_once('/') {
        Some((bare, resource)) => {
            format!("{}/{resource}", bare.strip_suffix('.').unwrap_or(bare))
        }
        None => full.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_jids_are_normalised_per_rfc_7622() {
        assert_eq!(
            normalize_bare_jid("App@Example.ORG").unwrap(),
            "app@example.org"
        );
        assert_eq!(
            normalize_bare_jid("App@Example.ORG/Phone").unwrap(),
            "app@example.org"
        );
        assert_eq!(
            normalize_bare_jid("app@example.org.").unwrap(),
            "app@example.org"
        );
        assert_eq!(normalize_bare_jid("Example.ORG").unwrap(), "example.org");
        assert!(normalize_bare_jid("a@b@c").is_err());
        assert!(normalize_bare_jid("app@").is_err());
        assert!(normalize_bare_jid("app @example.org").is_err());
    }
}
