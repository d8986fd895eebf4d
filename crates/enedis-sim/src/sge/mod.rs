//! Enedis SGE (B2B, "tiers"): SOAP 1.1 document/literal services on the paths of
//! their WSDL `soap:address` (root paths, as on `sge-ws.enedis.fr`), only on the
//! mutual-TLS listener (`--sge-listen`, [`tls`]). `crates/enedis-sim/SGE-WORK.md`
//! says what is served and what is inferred.

use axum::Router;
use axum::routing::post;

use crate::state::Sim;

mod cdtc;
mod cmd;
mod codes;
pub mod meters;
pub(crate) mod sad;
mod soap;
pub mod tls;

pub(crate) fn routes() -> Router<Sim> {
    Router::new()
        .route("/ConsultationMesuresDetaillees/v3.0", post(cmd::consulter))
        .route(
            "/ConsultationDonneesTechniquesContractuelles/v1.0",
            post(cdtc::consulter),
        )
        .route("/CommandeServicesAccesDonnees/v1.0", post(sad::commander))
        .route(
            "/CommandeArretServicesAccesDonnees/v1.0",
            post(sad::arreter),
        )
}
