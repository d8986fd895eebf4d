//! Enedis SGE (B2B, "tiers"): SOAP 1.1 document/literal services on the paths of
//! their WSDL `soap:address` (root paths, as on `sge-ws.enedis.fr`).
//!
//! Work in progress (`crates/enedis-sim/SGE-WORK.md`): only
//! `ConsultationMesuresDetaillees` v3.0 is served, only on the mutual-TLS listener
//! (`--sge-listen`, [`tls`]); CDTC and the access-service orders come next.

use axum::Router;
use axum::routing::post;

use crate::state::Sim;

mod cmd;
mod codes;
mod meters;
mod soap;
pub mod tls;

pub fn routes() -> Router<Sim> {
    Router::new().route("/ConsultationMesuresDetaillees/v3.0", post(cmd::consulter))
}
