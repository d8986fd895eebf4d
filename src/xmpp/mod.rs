//! The agent on XMPP: session and reconnection ([`session`], [`connector`]),
//! the handle the rest of the agent sends through ([`handle`]), namespaces
//! ([`ns`]), XEP-0050 ad-hoc commands with XEP-0004 forms ([`command`], [`forms`]),
//! XEP-0030 disco ([`disco`]), stanza errors ([`errors`]), the allow-list
//! ([`auth`]) and the command framework ([`router`]).
//!
//! The agent's `run` wires it as:
//! ```ignore
//! let agent = XmppAgent::new(&config.xmpp)?;          // validates JID, server, CA file
//! let xmpp = agent.handle();                          // for notifications, /healthz
//! let commands = CommandSet::new(ctx).with(GetHistory).with(GET_LOAD_CURVE);
//! let peers = AllowList::from_peers(&config.peers)?;  // peers.replace(…) on SIGHUP
//! agent.run(commands, peers, shutdown_token).await;   // returns after a clean shutdown
//! ```

pub mod auth;
pub mod command;
pub mod connector;
pub mod disco;
pub mod errors;
pub mod forms;
pub mod handle;
pub mod ns;
pub mod router;
pub mod session;
pub mod wire;

/// Defined once, in the model; named here too because a peer reading answers
/// meets it next to [`Command`].
pub use crate::quoalise::NS_QUOALISE;
pub use auth::{AllowList, InvalidPeerJid};
pub use command::{Action, Actions, Command, Note, NoteType, Status};
pub use connector::{ConnectError, SetupError};
pub use errors::{CommandError, ISSUER_ENEDIS, ISSUER_ENEDIS_SGE, RetryLater, TooLarge};
pub use forms::{FieldExt, FormBuilder, FormError, SubmittedForm};
pub use handle::{IqError, SendError, SessionState, XmppHandle};
pub use ns::NS_COMMANDS;
pub use router::{
    AdHocCommand, BoxFuture, CommandFuture, CommandSet, Continuation, Outcome, Request,
    RouterSettings,
};
pub use session::{SessionControl, SessionEnd, XmppAgent, run_xmpp};

#[cfg(test)]
pub(crate) mod test_util {
    use minidom::Element;

    /// Asserts that `actual` is the document `expected` (attribute order and
    /// quoting aside; `expected` has no indentation whitespace).
    #[track_caller]
    pub fn assert_xml_eq(actual: &Element, expected: &str) {
        let expected: Element = expected.parse().expect("expected XML parses");
        assert_eq!(
            actual,
            &expected,
            "\nactual:   {}\nexpected: {}",
            String::from(actual),
            String::from(&expected)
        );
    }
}
