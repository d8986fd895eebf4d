//! Telling a peer that a consumer consented: the `<message type="chat">` of the
//! protocol (`quoalise-protocol.md`, `get_authorize_uri`), and the [`Notifier`]
//! trait the web layer sends it through, so the web layer does not depend on how
//! the XMPP session is run. The agent passes its [`XmppHandle`]; tests may pass
//! anything that records what it gets.

use async_trait::async_trait;
use minidom::Element;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::message::{Lang, Message};

use crate::xmpp::XmppHandle;

/// Namespace of the consent notification payload.
pub const NS_AUTHORIZE: &str = "https://consometers.org/dataconnect#authorize";

/// What a peer is told when a consumer has consented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentNotification {
    /// The PRMs granted (14 digits each).
    pub usage_points: Vec<String>,
    /// The peer's own `state`, when it gave one on the authorize URI.
    pub peer_state: Option<String>,
}

impl ConsentNotification {
    /// `Access granted for usage points 22516914714270, 30001610071843`.
    pub fn body(&self) -> String {
        format!(
            "Access granted for usage points {}",
            self.usage_points.join(", ")
        )
    }

    /// `<x xmlns="https://consometers.org/dataconnect#authorize"><usage-point>…</usage-point>…<state>…</state></x>`
    /// (schemas/authorize-notification.rng).
    pub fn payload(&self) -> Element {
        let mut x = Element::builder("x", NS_AUTHORIZE);
        for prm in &self.usage_points {
            x = x.append(
                Element::builder("usage-point", NS_AUTHORIZE)
                    .append(prm.as_str())
                    .build(),
            );
        }
        if let Some(state) = &self.peer_state {
            x = x.append(
                Element::builder("state", NS_AUTHORIZE)
                    .append(state.as_str())
                    .build(),
            );
        }
        x.build()
    }

    /// The whole message to `peer`.
    pub fn message(&self, peer: Jid) -> Message {
        Message::chat(Some(peer))
            .with_body(Lang::default(), self.body())
            .with_payloads(vec![self.payload()])
    }
}

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("the peer's JID {0:?} is not a valid JID")]
    BadJid(String),
    #[error("the XMPP session is stopped")]
    Stopped,
    /// An instance without the XMPP session (a standby) could not queue it for
    /// the leader.
    #[error("cannot queue the notification for the leader: {0}")]
    Queue(String),
}

/// Something that can tell a peer (a normalised bare JID) about a consent.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn notify(
        &self,
        peer: &str,
        notification: &ConsentNotification,
    ) -> Result<(), NotifyError>;
}

/// The agent's XMPP session: the message is queued on the stream (and goes out
/// after a reconnection if the session is down).
#[async_trait]
impl Notifier for XmppHandle {
    async fn notify(
        &self,
        peer: &str,
        notification: &ConsentNotification,
    ) -> Result<(), NotifyError> {
        let jid = Jid::new(peer).map_err(|_| NotifyError::BadJid(peer.to_owned()))?;
        self.send_message(notification.message(jid))
            .await
            .map_err(|_| NotifyError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::test_util::assert_xml_eq;

    #[test]
    fn builds_the_protocol_message() {
        let n = ConsentNotification {
            usage_points: vec!["22516914714270".into(), "30001610071843".into()],
            peer_state: Some("peer-state <&>".into()),
        };
        let message = n.message(Jid::new("app@example.org").unwrap());
        assert_xml_eq(
            &Element::from(message),
            concat!(
                r#"<message xmlns="jabber:client" type="chat" to="app@example.org">"#,
                r#"<body>Access granted for usage points 22516914714270, 30001610071843</body>"#,
                r#"<x xmlns="https://consometers.org/dataconnect#authorize">"#,
                r#"<usage-point>22516914714270</usage-point><usage-point>30001610071843</usage-point>"#,
                r#"<state>peer-state &lt;&amp;&gt;</state></x></message>"#
            ),
        );
        let without_state = ConsentNotification {
            usage_points: vec!["22516914714270".into()],
            peer_state: None,
        };
        assert_xml_eq(
            &without_state.payload(),
            r#"<x xmlns="https://consometers.org/dataconnect#authorize"><usage-point>22516914714270</usage-point></x>"#,
        );
    }
}
