//! The contract path: `get_contract`'s read of a usage point's contract and
//! technical data, with the data path's rules:
//!
//! 1. authorise: the peer may read the PRM as it may read its readings (a grant
//!    in `[[peers]] usage_points`, or a valid consent it owns;
//!    [`super::authorise`]);
//! 2. read through the upstream the agent holds (the cache keeps contracts 24
//!    hours, [`crate::upstream::cache`]), as interactive work of that peer for the
//!    quota scheduler, within the request's deadline;
//! 3. every access, allowed or refused, is written to the audit trail before it
//!    is answered, as `contract` ([`super::audit::Audit::begin_contract`]).
//!
//! Upstream errors become stanza errors as for readings
//! ([`super::data::upstream_error`]); a generation without contract APIs (v3,
//! v4) gives `feature-not-implemented`, with the generations that have them.

use xmpp_parsers::jid::BareJid;

use super::audit::Audit;
use super::authorise::{Grant, Platform, authorise_prm, out_of_scope, platform_for};
use super::context::AgentContext;
use super::data::{DEADLINE_MARGIN, ask_for, sge_client, upstream_error};
use crate::logging::RequestLog;
use crate::quoalise::{Contract, Prm, Scope, Unavailable};
use crate::upstream::Class;
use crate::xmpp::CommandError;

/// The form field that names the PRM, for error texts.
pub const PRM_FIELD: &str = "usage_point_id";

/// A contract, and why the peer could read it.
#[derive(Debug, Clone)]
pub struct ContractAnswer {
    pub contract: Contract,
    pub grant: Grant,
}

/// Authorise, read and audit `requester`'s request for the contract of `prm`,
/// due at `deadline`.
pub async fn fetch_contract(
    ctx: &AgentContext,
    requester: &BareJid,
    prm: Prm,
    deadline: tokio::time::Instant,
    log: &mut RequestLog,
) -> Result<ContractAnswer, CommandError> {
    let mut audit = Audit::begin_contract(requester, prm, log);
    let result = unaudited(ctx, requester, prm, deadline, log, &mut audit).await;
    audit.end(&ctx.store, log, result).await
}

async fn unaudited(
    ctx: &AgentContext,
    requester: &BareJid,
    prm: Prm,
    deadline: tokio::time::Instant,
    log: &mut RequestLog,
    audit: &mut Audit,
) -> Result<ContractAnswer, CommandError> {
    let settings = ctx.settings();
    let grant = authorise_prm(ctx, &settings, requester, prm).await?;
    let scopes = settings.scopes(requester);
    if !scopes.contains(Scope::Contract) {
        return Err(out_of_scope(
            requester,
            scopes,
            Scope::Contract,
            "a PRM's contract and meter are contract data",
        ));
    }
    audit.allowed_on(&grant);

    let due = deadline - DEADLINE_MARGIN;
    let ask = ask_for(&settings, requester, Class::Interactive, due);
    let platform = platform_for(ctx, &grant, prm).await?;
    let read = async {
        match platform {
            Platform::DataConnect => ctx.upstream.contract(prm, &ask).await,
            Platform::Sge => sge_client(ctx, prm)?.contract(prm, &ask).await,
        }
    };
    let fetched = match tokio::time::timeout_at(due, read).await {
        Ok(Ok(fetched)) => fetched,
        Ok(Err(e)) => return Err(upstream_error(platform, &e, PRM_FIELD)),
        Err(_) => {
            tracing::warn!(%prm, platform = platform.name(), "Enedis did not answer the contract read before the request's deadline");
            return Err(CommandError::unavailable(format!(
                "{} did not answer in time; try again later",
                platform.name()
            )));
        }
    };
    log.upstream_calls(fetched.calls);
    let mut contract = fetched.contract;
    // The address says who lives there: only for a peer whose scopes include
    // identity (the cache keeps it for those).
    if contract.address.is_some() && !scopes.contains(Scope::Identity) {
        contract.address = None;
        contract.unavailable.push(Unavailable {
            source: "scopes".to_owned(),
            fields: vec!["address".to_owned()],
            code: None,
            reason: "this peer's scopes do not include identity".to_owned(),
        });
    }
    Ok(ContractAnswer { contract, grant })
}
