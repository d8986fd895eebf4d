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

/// The SGE services served, by path: the faultstring and namespace of their
/// faults.
const SERVICES: [(&str, &str, &str); 4] = [
    (
        "/ConsultationMesuresDetaillees/v3.0",
        cmd::FAULTSTRING,
        cmd::NS,
    ),
    (
        "/ConsultationDonneesTechniquesContractuelles/v1.0",
        cdtc::FAULTSTRING,
        cdtc::NS,
    ),
    (
        "/CommandeServicesAccesDonnees/v1.0",
        sad::FAULTSTRING,
        sad::NS,
    ),
    (
        "/CommandeArretServicesAccesDonnees/v1.0",
        sad::FAULTSTRING,
        sad::NS_ARRET,
    ),
];

/// Whether `path` is an SGE service's (the gateway answers its faults in SOAP).
pub(crate) fn is_sge_path(path: &str) -> bool {
    SERVICES.iter().any(|(p, _, _)| *p == path)
}

fn service(path: &str) -> (&'static str, &'static str) {
    SERVICES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map_or(("Erreur Technique", soap::TECHNIQUE), |(_, f, ns)| (f, ns))
}

/// The admin API's forced status (or random failure) on an SGE path: a SOAP
/// fault at that HTTP status, SGT506 for a 503, SGT500 otherwise.
pub(crate) fn forced_fault(path: &str, status: u16) -> axum::response::Response {
    let (faultstring, ns) = service(path);
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let sgt = if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        codes::Sgt::Indisponible
    } else {
        codes::Sgt::Technique
    };
    soap::fault_with_status(status, faultstring, ns, sgt)
}

/// A call over `--sge-pace`: HTTP 500, SGT506 (inferred: SGE documents the
/// homologation limit, not its answer).
pub(crate) fn pace_fault(path: &str) -> axum::response::Response {
    let (faultstring, ns) = service(path);
    soap::fault(faultstring, ns, codes::Sgt::Indisponible)
}

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
