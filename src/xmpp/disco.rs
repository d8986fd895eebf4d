//! XEP-0030 service discovery answers: what the agent is and supports
//! (`disco#info`), and the commands the asking JID may run (`disco#items` on the
//! XEP-0050 commands node).

use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::ns;

use super::ns::NS_COMMANDS;

/// Features of the agent's own JID.
pub const AGENT_FEATURES: &[&str] = &[
    ns::DISCO_INFO,
    ns::DISCO_ITEMS,
    NS_COMMANDS,
    ns::DATA_FORMS,
    ns::PING,
];

/// `disco#info` on the agent itself: an automated client offering ad-hoc commands.
pub fn agent_info(name: &str) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new("client", "bot", "en", name)],
        features: AGENT_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        extensions: Vec::new(),
    }
}

/// `disco#info` on the commands node (XEP-0050 §2.2).
pub fn command_list_info() -> DiscoInfoResult {
    DiscoInfoResult {
        node: Some(NS_COMMANDS.to_owned()),
        identities: vec![Identity::new(
            "automation",
            "command-list",
            "en",
            "Commands",
        )],
        features: Default::default(),
        extensions: Vec::new(),
    }
}

/// `disco#info` on one command's node (XEP-0050 §2.3).
pub fn command_info(node: &str, name: &str) -> DiscoInfoResult {
    DiscoInfoResult {
        node: Some(node.to_owned()),
        identities: vec![Identity::new("automation", "command-node", "en", name)],
        features: [NS_COMMANDS, ns::DATA_FORMS]
            .iter()
            .map(|f| (*f).to_owned())
            .collect(),
        extensions: Vec::new(),
    }
}

/// `disco#items` on the commands node: `(node, name)` of each command the asker
/// may run, addressed at the agent's full JID.
pub fn command_items<'a>(
    agent: &Jid,
    commands: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> DiscoItemsResult {
    DiscoItemsResult {
        node: Some(NS_COMMANDS.to_owned()),
        items: commands
            .into_iter()
            .map(|(node, name)| Item {
                jid: agent.clone(),
                node: Some(node.to_owned()),
                name: Some(name.to_owned()),
            })
            .collect(),
        rsm: None,
    }
}

/// `disco#items` with no items (on the agent itself, or the commands node for a
/// JID that may run nothing).
pub fn no_items(node: Option<&str>) -> DiscoItemsResult {
    DiscoItemsResult {
        node: node.map(str::to_owned),
        items: Vec::new(),
        rsm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::test_util::assert_xml_eq;
    use minidom::Element;

    #[test]
    fn agent_info_lists_identity_and_features() {
        assert_xml_eq(
            &Element::from(agent_info("Quoalise agent")),
            concat!(
                r#"<query xmlns="http://jabber.org/protocol/disco#info">"#,
                r#"<identity category="client" type="bot" name="Quoalise agent" xml:lang="en"/>"#,
                r#"<feature var="http://jabber.org/protocol/commands"/>"#,
                r#"<feature var="http://jabber.org/protocol/disco#info"/>"#,
                r#"<feature var="http://jabber.org/protocol/disco#items"/>"#,
                r#"<feature var="jabber:x:data"/>"#,
                r#"<feature var="urn:xmpp:ping"/>"#,
                r#"</query>"#
            ),
        );
    }

    #[test]
    fn command_items_point_at_the_agent() {
        let agent = Jid::new("agent@example.org/agent").unwrap();
        assert_xml_eq(
            &Element::from(command_items(&agent, [("get_history", "Get history")])),
            concat!(
                r#"<query xmlns="http://jabber.org/protocol/disco#items" node="http://jabber.org/protocol/commands">"#,
                r#"<item jid="agent@example.org/agent" node="get_history" name="Get history"/>"#,
                r#"</query>"#
            ),
        );
    }
}
