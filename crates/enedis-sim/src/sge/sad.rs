//! SGE access services (`CommanderServicesAccesDonnees` v1.0 and its `Arret`,
//! SGE v26.1): which point has which active service, read by CMD v3 under
//! `cadreAcces=SERVICE_ACCES`.

//!
//! `CommanderServicesAccesDonnees` v1.0: `demande/donneesGenerales` {`refExterne`?,
//! `pointId`, `initiateurLogin`, `contratId`, `dateFin`?, `sens`,
//! `declarationAccordClient`? {`accord`, `personnePhysique` | `personneMorale`}},
//! `demande/servicesSouscrits/serviceSouscrit+` {`typeDonnees`,
//! `optionsPublication`?}. Checks, in order (inferred): the request (SGT562), the
//! point (SGT401), the direction (SGT583), the types (CDC/IDX/PMAX/ENERGIE, else
//! SGT562; PMAX off Linky SGT579), the consent (no `accord=true`: SGT566), the end
//! (`dateFin` after today, else SGT562; more than 3 years away: SGT5O9; absent:
//! 3 years, inferred), an active service of the same type on the point (SGT570).
//! The answer lists one `affaire` per service, as the XSD, with the header
//! `tec:acquittement` SGT200 of the CCPM v3 example answers.
//!
//! `CommanderArretServicesAccesDonnees` v1.0: `demande/donneesGenerales`
//! {`refExterne`?, `pointId`, `initiateurLogin`, `contratId`, `sens`},
//! `demande/servicesSouscrits/serviceSouscritId+`. An id that is not an active
//! service of that point: SGT4G3 (inferred). Answer: `servicesResilies`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Response;
use jiff::ToSpan;
use jiff::civil::Date;

use super::codes::Sgt;
use super::meters;
use super::soap;
use crate::model::Prm;
use crate::paris::parse_date;
use crate::state::Sim;

/// The namespaces of the two operations.
pub const NS: &str = "http://www.enedis.fr/sge/b2b/commanderservicesaccesdonnees/v1.0";
pub const NS_ARRET: &str = "http://www.enedis.fr/sge/b2b/commanderarretservicesaccesdonnees/v1.0";
/// Inferred (no example fault of the orders).
pub const FAULTSTRING: &str = "Erreur Technique";

pub use crate::access_services::{AccessService, TypeDonnees};

/// `prestation/fiche`: code and label (the CCPM example's F300C for a
/// curve; the others inferred from the F3xx catalogue names).
fn fiche(kind: TypeDonnees) -> (&'static str, &'static str) {
    match kind {
        TypeDonnees::Cdc => (
            "F300C",
            "Collecte et transmission récurrente de la courbe de charge",
        ),
        TypeDonnees::Idx => ("F305", "Transmission récurrente des index quotidiens"),
        TypeDonnees::Pmax => ("F305", "Transmission récurrente des puissances maximales"),
        TypeDonnees::Energie => ("F305", "Transmission récurrente des énergies quotidiennes"),
    }
}

type Refused = (Sgt, String);

fn malformed(why: impl Into<String>) -> Refused {
    (Sgt::Malforme, why.into())
}

const GENERAL: &str = "demande/donneesGenerales";

/// The `donneesGenerales` leaves, checked in XSD order: `expected` lists them,
/// `?` marking the optional ones; `declarationAccordClient/…` leaves are checked
/// apart.
fn check_general(tree: &soap::Tree, expected: &[&str]) -> Result<(), Refused> {
    let names: Vec<&str> = tree
        .leaves
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("demande/donneesGenerales/"))
        .map(|n| n.split('/').next().unwrap_or(n))
        .fold(Vec::new(), |mut acc, n| {
            if acc.last() != Some(&n) {
                acc.push(n);
            }
            acc
        });
    let mut want = expected.iter().peekable();
    for name in &names {
        loop {
            match want.next() {
                Some(w) if w.trim_end_matches('?') == *name => break,
                Some(w) if w.ends_with('?') => continue,
                _ => return Err(malformed(format!("donneesGenerales fields {names:?}"))),
            }
        }
    }
    if want.any(|w| !w.ends_with('?')) {
        return Err(malformed(format!("donneesGenerales fields {names:?}")));
    }
    Ok(())
}

/// The point and direction of an order.
fn point(tree: &soap::Tree) -> Result<(meters::SgeMeter, &str), Refused> {
    let prm: Prm = tree
        .get(&format!("{GENERAL}/pointId"))
        .unwrap_or_default()
        .parse()
        .map_err(|e| malformed(format!("pointId: {e}")))?;
    let sens = tree.get(&format!("{GENERAL}/sens")).unwrap_or_default();
    if !matches!(sens, "SOUTIRAGE" | "INJECTION") {
        return Err(malformed(format!("sens {sens:?}")));
    }
    let meter = meters::lookup(prm).ok_or((Sgt::PointInexistant, format!("PRM {prm}")))?;
    let wanted = if sens == "SOUTIRAGE" {
        crate::model::Direction::Consumption
    } else {
        crate::model::Direction::Production
    };
    if wanted != meter.direction() {
        return Err((Sgt::SensIncorrect, format!("sens {sens}")));
    }
    Ok((meter, sens))
}

/// What an order asks.
struct Order {
    prm: Prm,
    sens: String,
    end: Date,
    kinds: Vec<(TypeDonnees, Option<String>)>,
    titulaire: Option<String>,
    login: String,
}

fn check_order(body: &str, today: Date) -> Result<Order, Refused> {
    let tree = soap::parse_tree(body).map_err(malformed)?;
    if tree.operation != "commanderServicesAccesDonnees" || tree.namespace != NS {
        return Err(malformed(format!(
            "operation {{{}}}{}",
            tree.namespace, tree.operation
        )));
    }
    check_general(
        &tree,
        &[
            "refExterne?",
            "pointId",
            "initiateurLogin",
            "contratId",
            "dateFin?",
            "sens",
            "declarationAccordClient?",
        ],
    )?;
    if tree.leaves.iter().any(|(p, _)| {
        !p.starts_with("demande/donneesGenerales/")
            && !p.starts_with("demande/servicesSouscrits/serviceSouscrit/")
    }) {
        return Err(malformed("unexpected element under demande"));
    }
    let (meter, sens) = point(&tree)?;
    // Each serviceSouscrit starts with its typeDonnees; options follow it.
    let mut kinds: Vec<(TypeDonnees, Option<String>)> = Vec::new();
    for (path, value) in &tree.leaves {
        let Some(rest) = path.strip_prefix("demande/servicesSouscrits/serviceSouscrit/") else {
            continue;
        };
        match rest {
            "typeDonnees" => {
                let kind = TypeDonnees::parse(value.trim())
                    .ok_or_else(|| malformed(format!("typeDonnees {value:?}")))?;
                kinds.push((kind, None));
            }
            "optionsPublication/optionPublication/periodiciteTransmission" => {
                let p = value.trim();
                if !matches!(p, "P1D" | "P7D" | "P1M") {
                    return Err(malformed(format!("periodiciteTransmission {p:?}")));
                }
                match kinds.last_mut() {
                    Some((_, option)) => *option = Some(p.to_owned()),
                    None => return Err(malformed("option before typeDonnees")),
                }
            }
            "optionsPublication/optionPublication/mesuresCorrigees" => {}
            other => return Err(malformed(format!("serviceSouscrit/{other}"))),
        }
    }
    if kinds.is_empty() {
        return Err(malformed("no serviceSouscrit"));
    }
    if let Some((kind, _)) = kinds
        .iter()
        .find(|(k, _)| *k == TypeDonnees::Pmax && !meter.segment.linky())
    {
        return Err((
            Sgt::TypeIndisponible,
            format!("{} on {}", kind.code(), meter.segment.name()),
        ));
    }
    let accord = format!("{GENERAL}/declarationAccordClient");
    let titulaire = match tree.get(&format!("{accord}/accord")) {
        Some("true" | "1") => {
            let physique = format!("{accord}/personnePhysique");
            let morale = format!("{accord}/personneMorale/denominationSociale");
            if let Some(name) = tree.get(&morale) {
                Some(name.to_owned())
            } else if tree.has(&physique) {
                let nom = tree
                    .get(&format!("{physique}/nom"))
                    .ok_or_else(|| malformed("personnePhysique without nom"))?;
                let prenom = tree.get(&format!("{physique}/prenom"));
                Some(prenom.map_or(nom.to_owned(), |p| format!("{p} {nom}")))
            } else {
                None
            }
        }
        Some("false" | "0") | None => {
            return Err((Sgt::AccordClientRequis, "no declared consent".into()));
        }
        Some(other) => return Err(malformed(format!("accord {other:?}"))),
    };
    let limit = today
        .checked_add(3.years())
        .map_err(|e| (Sgt::Technique, e.to_string()))?;
    let end = match tree.get(&format!("{GENERAL}/dateFin")) {
        Some(d) => parse_date(d).map_err(|e| malformed(e.to_string()))?,
        None => limit,
    };
    if end <= today {
        return Err(malformed(format!("dateFin {end} not after {today}")));
    }
    if end > limit {
        return Err((Sgt::FinTropLointaine, format!("dateFin {end} > {limit}")));
    }
    Ok(Order {
        prm: meter.meter.prm,
        sens: sens.to_owned(),
        end,
        kinds,
        titulaire,
        login: tree
            .get(&format!("{GENERAL}/initiateurLogin"))
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The header every order answer carries (as the CCPM v3 example answers).
fn acquittement(service_ns: &str, prm: Prm, affaire: &str, login: &str) -> String {
    format!(
        "  <soap:Header>\n    <ns3:acquittement xmlns:ns4=\"{service_ns}\" xmlns:ns3=\"{}\">\n      <resultat code=\"SGT200\">Succès</resultat>\n      <infoFonctionnelles>\n        <pointId>{prm}</pointId>\n        <affaireId>{affaire}</affaireId>\n      </infoFonctionnelles>\n      <infoDemandeur>\n        <loginDemandeur>{}</loginDemandeur>\n      </infoDemandeur>\n    </ns3:acquittement>\n  </soap:Header>\n",
        soap::TECHNIQUE,
        soap::escape(login),
    )
}

pub async fn commander(State(sim): State<Sim>, body: String) -> Response {
    let today = sim.today();
    let order = match check_order(&body, today) {
        Ok(o) => o,
        Err((sgt, why)) => {
            tracing::debug!(code = sgt.code(), %why, "SGE access service order refused");
            return soap::fault(FAULTSTRING, NS, sgt);
        }
    };
    let created = {
        let mut st = sim.lock();
        let services = &mut st.sge;
        if let Some((kind, _)) = order
            .kinds
            .iter()
            .find(|(k, _)| services.active(order.prm, *k, today))
        {
            tracing::debug!(
                code = "SGT570",
                kind = kind.code(),
                "SGE access service already active"
            );
            drop(st);
            return soap::fault(FAULTSTRING, NS, Sgt::DejaActif);
        }
        let mut created = Vec::new();
        for (kind, publication) in &order.kinds {
            let (id, affaire) = services.next_ids();
            let service = AccessService {
                id,
                affaire,
                prm: order.prm,
                kind: *kind,
                sens: order.sens.clone(),
                start: today,
                end: order.end,
                publication: publication.clone(),
                titulaire: order.titulaire.clone(),
                stopped: None,
            };
            services.services.push(service.clone());
            created.push(service);
        }
        created
    };
    tracing::info!(
        prm = %order.prm,
        services = created.len(),
        "SGE access services ordered"
    );
    let mut x = String::new();
    let first = created.first().map(|s| s.affaire.as_str()).unwrap_or("");
    x.push_str(&acquittement(NS, order.prm, first, &order.login));
    let _ = write!(
        x,
        "  <soap:Body>\n    <ns4:commanderServicesAccesDonneesResponse xmlns:ns4=\"{NS}\" xmlns:ns3=\"{}\">\n      <affaires>\n",
        soap::TECHNIQUE
    );
    for s in &created {
        let (code, label) = fiche(s.kind);
        let _ = write!(
            x,
            "        <affaire>\n          <affaireId>{}</affaireId>\n          <prestations>\n            <prestation>\n              <rang>1</rang>\n              <fiche libelle=\"{label}\" code=\"{code}\"/>\n            </prestation>\n          </prestations>\n          <serviceSouscritMesures>\n            <serviceSouscritId>{}</serviceSouscritId>\n            <mesuresTypeCode>{}</mesuresTypeCode>\n          </serviceSouscritMesures>\n        </affaire>\n",
            s.affaire,
            s.id,
            s.kind.code()
        );
    }
    x.push_str(
        "      </affaires>\n    </ns4:commanderServicesAccesDonneesResponse>\n  </soap:Body>\n",
    );
    soap::ok_with_header(&x)
}

pub async fn arreter(State(sim): State<Sim>, body: String) -> Response {
    let today = sim.today();
    let checked = (|| {
        let tree = soap::parse_tree(&body).map_err(malformed)?;
        if tree.operation != "commanderArretServicesAccesDonnees" || tree.namespace != NS_ARRET {
            return Err(malformed(format!(
                "operation {{{}}}{}",
                tree.namespace, tree.operation
            )));
        }
        check_general(
            &tree,
            &[
                "refExterne?",
                "pointId",
                "initiateurLogin",
                "contratId",
                "sens",
            ],
        )?;
        let (meter, _) = point(&tree)?;
        let ids: Vec<String> = tree
            .all("demande/servicesSouscrits/serviceSouscritId")
            .into_iter()
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Err(malformed("no serviceSouscritId"));
        }
        let login = tree
            .get(&format!("{GENERAL}/initiateurLogin"))
            .unwrap_or_default()
            .to_owned();
        Ok((meter.meter.prm, ids, login))
    })();
    let (prm, ids, login) = match checked {
        Ok(c) => c,
        Err((sgt, why)) => {
            tracing::debug!(code = sgt.code(), %why, "SGE access service stop refused");
            return soap::fault(FAULTSTRING, NS_ARRET, sgt);
        }
    };
    let stopped = {
        let mut st = sim.lock();
        let services = &mut st.sge.services;
        let known = |id: &str| {
            services
                .iter()
                .position(|s| s.id == id && s.prm == prm && s.active(today))
        };
        let mut at = Vec::new();
        for id in &ids {
            match known(id) {
                Some(i) => at.push(i),
                None => {
                    tracing::debug!(code = "SGT4G3", %id, "SGE: no such active access service");
                    drop(st);
                    return soap::fault(FAULTSTRING, NS_ARRET, Sgt::AucuneMesure);
                }
            }
        }
        at.into_iter()
            .map(|i| {
                services[i].stopped = Some(today);
                (services[i].affaire.clone(), services[i].id.clone())
            })
            .collect::<Vec<_>>()
    };
    tracing::info!(%prm, services = stopped.len(), "SGE access services stopped");
    let mut x = String::new();
    let first = stopped.first().map(|s| s.0.as_str()).unwrap_or("");
    x.push_str(&acquittement(NS_ARRET, prm, first, &login));
    let _ = write!(
        x,
        "  <soap:Body>\n    <ns4:commanderArretServicesAccesDonneesResponse xmlns:ns4=\"{NS_ARRET}\" xmlns:ns3=\"{}\">\n      <servicesResilies>\n",
        soap::TECHNIQUE
    );
    for (affaire, id) in &stopped {
        let _ = write!(
            x,
            "        <serviceResilie>\n          <affaireId>{affaire}</affaireId>\n          <serviceSouscritId>{id}</serviceSouscritId>\n        </serviceResilie>\n"
        );
    }
    x.push_str("      </servicesResilies>\n    </ns4:commanderArretServicesAccesDonneesResponse>\n  </soap:Body>\n");
    soap::ok_with_header(&x)
}
