//! The XML namespaces of the XMPP plumbing that are not in xmpp-parsers'
//! `ns` module. They sit alone here so that the wire types ([`super::command`]),
//! the forms and the stanza errors can all name them without importing each
//! other. The Quoalise namespace belongs to the model: [`crate::quoalise::NS_QUOALISE`].

/// XEP-0050 namespace.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";
