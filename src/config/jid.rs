//! The one JID normaliser: peers, the agent's own JID, the allow-list and the
//! command line all compare JIDs in the form it gives (RFC 7622, root dot removed).

use xmpp_parsers::jid::{BareJid, Error, Jid};

/// The bare JID of `jid`, normalised per RFC 7622 (stringprep: localpart and domain
/// case-folded, a final root dot removed): the form in which peers are compared.
/// A resource, if any, is dropped.
pub fn normalize_bare_jid(jid: &str) -> Result<String, Error> {
    Ok(bare_string(&Jid::new(jid)?))
}

/// [`normalize_bare_jid`] as a typed [`BareJid`], for sets of JIDs.
pub fn bare_jid(jid: &str) -> Result<BareJid, Error> {
    BareJid::new(&normalize_bare_jid(jid)?)
}

/// [`bare_jid`] for input that must be bare: a JID with a `/resource` is refused.
pub fn parse_bare_jid(jid: &str) -> Result<BareJid, Error> {
    BareJid::new(jid)?;
    bare_jid(jid)
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

    /// The allow-list (`bare_jid`), the command line (`parse_bare_jid`) and the
    /// configuration (`normalize_bare_jid`) agree on every spelling, root dot included.
    #[test]
    fn every_entry_point_gives_the_same_bare_jid() {
        for (spelling, expected) in [
            ("app@example.org", "app@example.org"),
            ("App@Example.ORG", "app@example.org"),
            ("app@example.org.", "app@example.org"),
            ("App@Example.ORG.", "app@example.org"),
            ("example.org.", "example.org"),
        ] {
            assert_eq!(
                normalize_bare_jid(spelling).unwrap(),
                expected,
                "{spelling}"
            );
            assert_eq!(bare_jid(spelling).unwrap().as_str(), expected, "{spelling}");
            assert_eq!(
                parse_bare_jid(spelling).unwrap().as_str(),
                expected,
                "{spelling}"
            );
        }
        assert_eq!(
            bare_jid("App@Example.ORG./phone").unwrap().as_str(),
            "app@example.org"
        );
        assert!(parse_bare_jid("app@example.org/phone").is_err());
        assert!(bare_jid("a@b@c").is_err());
    }
}
