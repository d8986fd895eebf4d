//! The REAL agent and its XMPP plumbing over a real Prosody: the session and
//! ad-hoc commands of the library, data answers and their authorisation, the
//! process lifecycle, answers over a stanza (pages), the audit trail and cache
//! seen through the agent, the contract of a PRM (`get_contract`), federation,
//! subscription pushes (to one subscriber, and to a fleet on a small quota), and a
//! misbehaving Enedis or XMPP server.

#[path = "../common/mod.rs"]
mod common;

mod answer_size;
mod audit;
mod contract;
mod data;
mod failover;
mod faults_upstream;
mod federation;
mod index;
mod lifecycle;
mod quota_fairness;
mod quota_restart;
mod scopes;
mod sge;
mod subscriptions_fleet;
mod subscriptions_late;
mod subscriptions_push;
mod xmpp_commands;
mod xmpp_session;
