//! `ConsultationDonneesTechniquesContractuelles` v1.0
//! (`consulterDonneesTechniquesContractuelles`): a point's technical and
//! contractual data, for every meter of [`super::meters`].
//!
//! The request is `pointId`, `loginUtilisateur`, `autorisationClient?` (directly
//! under the operation, no `demande`). Checks: the request (SGT562), the point
//! (SGT401), the customer's consent: `autorisationClient` absent or false →
//! SGT483, the only refusal of the AX.0466 column for this service about the
//! requester's rights (inferred). No example answer is known: the answer follows
//! the XSD's order and the layout of the CMD v3 answers; the codes and labels of
//! the tariff (`formuleTarifaireAcheminement`), meter type and voltage level are
//! inferred from TURPE names.

use std::fmt::Write as _;

use axum::response::Response;

use super::codes::Sgt;
use super::meters::{self, Segment, SgeMeter};
use super::soap;
use crate::model::Prm;

/// The service namespace of the operation elements.
pub const NS: &str =
    "http://www.enedis.fr/sge/b2b/services/consulterdonneestechniquescontractuelles/v1.0";
/// Inferred: GUI.0488's CMD faults say "Erreur Technique Mesures"; this one has
/// no example.
pub const FAULTSTRING: &str = "Erreur Technique";

pub async fn consulter(body: String) -> Response {
    match check(&body) {
        Ok(meter) => soap::ok(&answer(&meter)),
        Err((sgt, why)) => {
            tracing::debug!(code = sgt.code(), %why, "SGE CDTC refused");
            soap::fault(FAULTSTRING, NS, sgt)
        }
    }
}

type Refused = (Sgt, String);

fn check(body: &str) -> Result<SgeMeter, Refused> {
    let malformed = |why: String| (Sgt::Malforme, why);
    let tree = soap::parse_tree(body).map_err(malformed)?;
    if tree.operation != "consulterDonneesTechniquesContractuelles" || tree.namespace != NS {
        return Err(malformed(format!(
            "operation {{{}}}{}",
            tree.namespace, tree.operation
        )));
    }
    let names: Vec<&str> = tree.leaves.iter().map(|(p, _)| p.as_str()).collect();
    let expected: &[&str] = if names.contains(&"autorisationClient") {
        &["pointId", "loginUtilisateur", "autorisationClient"]
    } else {
        &["pointId", "loginUtilisateur"]
    };
    if names != expected {
        return Err(malformed(format!("fields {names:?}")));
    }
    let prm: Prm = tree
        .get("pointId")
        .unwrap_or_default()
        .parse()
        .map_err(|e| malformed(format!("pointId: {e}")))?;
    let autorisation = match tree.get("autorisationClient") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => return Err(malformed(format!("autorisationClient {other:?}"))),
    };
    let meter = meters::lookup(prm).ok_or((Sgt::PointInexistant, format!("PRM {prm}")))?;
    if !autorisation {
        return Err((Sgt::Habilitation, "autorisationClient is not true".into()));
    }
    Ok(meter)
}

/// `code`, `libelle` pairs of one point.
struct Facts {
    segment: &'static str,
    domaine: (&'static str, &'static str),
    comptage: (&'static str, &'static str),
    fta: Option<(&'static str, &'static str)>,
    power_unit: &'static str,
    calendar: Option<(&'static str, &'static str)>,
}

fn facts(m: &SgeMeter) -> Facts {
    let hta = ("HTA", "HTA");
    let linky = ("CCB", "Compteur Linky");
    let electronic = ("CEB", "Compteur électronique");
    match m.segment {
        // The XSD's segment codes are C2-C5 and INDET: C1 and producers are INDET.
        Segment::C1 => Facts {
            segment: "INDET",
            domaine: hta,
            comptage: electronic,
            fta: Some(("HTALU5", "HTA Longue Utilisation 5 postes")),
            power_unit: "kW",
            calendar: None,
        },
        Segment::C2 | Segment::C3 => Facts {
            segment: m.segment.name(),
            domaine: hta,
            comptage: electronic,
            fta: Some(("HTACU5", "HTA Courte Utilisation 5 postes")),
            power_unit: "kW",
            calendar: None,
        },
        Segment::C4 => Facts {
            segment: "C4",
            domaine: ("BTSUP", "BT > 36 kVA"),
            comptage: electronic,
            fta: Some(("BTSUPCU4", "BT > 36 kVA Courte Utilisation 4 postes")),
            power_unit: "kVA",
            calendar: None,
        },
        Segment::C5 => Facts {
            segment: "C5",
            domaine: ("BTINF", "BT ≤ 36 kVA"),
            comptage: linky,
            fta: Some(("BTINFCU4", "BT ≤ 36 kVA Courte Utilisation 4 postes")),
            power_unit: "kVA",
            calendar: Some(("FC000050", "6 cadrans")),
        },
        Segment::P1 | Segment::P2 | Segment::P3 => Facts {
            segment: "INDET",
            domaine: hta,
            comptage: electronic,
            fta: None,
            power_unit: "kW",
            calendar: None,
        },
        Segment::P4 => Facts {
            segment: "INDET",
            domaine: ("BTINF", "BT ≤ 36 kVA"),
            comptage: linky,
            fta: None,
            power_unit: "kVA",
            calendar: None,
        },
    }
}

fn answer(m: &SgeMeter) -> String {
    let f = facts(m);
    let mut x = String::new();
    let _ = write!(
        x,
        "    <ns3:consulterDonneesTechniquesContractuellesResponse xmlns:ns4=\"{}\" xmlns:ns3=\"{NS}\">\n      <point id=\"{}\">\n        <donneesGenerales>\n          <etatContractuel code=\"SERVC\">\n            <libelle>En service</libelle>\n          </etatContractuel>\n          <adresseInstallation>\n            <numeroEtNomVoie>1 RUE DE LA SIMULATION</numeroEtNomVoie>\n            <codePostal>75001</codePostal>\n            <commune code=\"75101\">\n              <libelle>PARIS 1ER ARRONDISSEMENT</libelle>\n            </commune>\n          </adresseInstallation>\n",
        soap::TECHNIQUE,
        m.meter.prm,
    );
    if f.fta.is_some() {
        let _ = writeln!(
            x,
            "          <dateDerniereModificationFormuleTarifaireAcheminement>{}</dateDerniereModificationFormuleTarifaireAcheminement>",
            m.meter.activation
        );
    }
    let _ = write!(
        x,
        "          <segment code=\"{0}\">\n            <libelle>{0}</libelle>\n          </segment>\n",
        f.segment
    );
    if m.segment.linky() {
        x.push_str("          <niveauOuvertureServices>2</niveauOuvertureServices>\n");
    }
    x.push_str("        </donneesGenerales>\n");
    let _ = write!(
        x,
        "        <situationAlimentation>\n          <alimentationPrincipale>\n            <domaineTension code=\"{}\">\n              <libelle>{}</libelle>\n            </domaineTension>\n            <puissanceRaccordementSoutirage>\n              <valeur>{}</valeur>\n              <unite>{}</unite>\n            </puissanceRaccordementSoutirage>\n          </alimentationPrincipale>\n        </situationAlimentation>\n",
        f.domaine.0,
        soap::escape(f.domaine.1),
        m.power_kva,
        f.power_unit,
    );
    let _ = write!(
        x,
        "        <situationComptage>\n          <dispositifComptage>\n            <typeComptage code=\"{}\">\n              <libelle>{}</libelle>\n            </typeComptage>\n            <compteurs>\n              <compteur>\n                <matricule>{}</matricule>\n              </compteur>\n            </compteurs>\n          </dispositifComptage>\n        </situationComptage>\n",
        f.comptage.0,
        soap::escape(f.comptage.1),
        matricule(m),
    );
    x.push_str("        <situationContractuelle>\n          <structureTarifaire>\n");
    if let Some((code, label)) = f.fta {
        let _ = write!(
            x,
            "            <formuleTarifaireAcheminement code=\"{code}\">\n              <libelle>{}</libelle>\n            </formuleTarifaireAcheminement>\n",
            soap::escape(label)
        );
    }
    let _ = write!(
        x,
        "            <puissanceSouscriteMax>\n              <valeur>{}</valeur>\n              <unite>{}</unite>\n            </puissanceSouscriteMax>\n",
        m.power_kva, f.power_unit
    );
    if let Some((code, label)) = f.calendar {
        let _ = write!(
            x,
            "            <calendrierFrn code=\"{code}\">\n              <libelle>{label}</libelle>\n            </calendrierFrn>\n"
        );
    }
    x.push_str("          </structureTarifaire>\n        </situationContractuelle>\n      </point>\n    </ns3:consulterDonneesTechniquesContractuellesResponse>\n");
    x
}

/// A meter serial of 12 digits drawn from the PRM.
fn matricule(m: &SgeMeter) -> String {
    format!(
        "{:012}",
        crate::synth::seed(m.meter.prm) % 1_000_000_000_000
    )
}
