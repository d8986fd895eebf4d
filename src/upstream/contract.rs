//! Contract and technical data of a usage point (`get_contract`), read from the
//! APIs each generation has for them, through the same HTTP machinery as the
//! readings (application token, quota scheduler, retries):
//!
//! | generation | call (PRM) | gives |
//! |---|---|---|
//! | 2026 | `situation_contrat_auto/v1/{prm}` | segments, subscribed power, tariff (label), contract start |
//! | 2026 | `synth_contrat_auto/v1/{prm}` | segments, services level, last activation per direction, last subscribed-power change |
//! | 2026 | `comptage_auto/v1/{prm}` | meter type, off-peak hours |
//! | v5 | `customers_upc/v5/usage_points/contracts?usage_point_id=` | segment, subscribed power, tariff (code), off-peak hours, meter type, services level, last activation, last tariff change |
//! | v5 | `customers_upa/v5/usage_points/addresses?usage_point_id=` | the meter's address |
//! | v3, v4 | none | [`UpstreamError::NotImplemented`] |
//!
//! The calls of one request go out together. A part Enedis will not give is
//! left out and named in the answer ([`Unavailable`]) instead of failing the
//! whole answer:
//!
//! - any part answered 403 `900908`: the agent's Enedis application is not
//!   subscribed to that API (the captured case of `comptage_auto`);
//! - a part other than the first answered 404: Enedis has none;
//! - the v5 address answered 403 (`ADAM-DC-0008` or other): the consent does not
//!   cover it.
//!
//! When every part is unavailable the answer is Enedis' refusal. Any other
//! refusal fails the request; an `ADAM-DC-0008` of the first part marks the
//! PRM's consents revoked, as a data call does. The 2026 identity, contact data
//! and customer address of `situation_contrat_auto` and the v5 identity API are
//! never read; `donnees_generales_auto` (the 2026 meter address) is not called:
//! the address is served for v5 only.

use jiff::Timestamp;
use reqwest::Method;

use super::client::EnedisClient;
use super::http::{Body, Call, Tally};
use super::normalise::ShapeError;
use super::{Ask, DataCall, EnedisFault, UpstreamError, api2026, v1};
use crate::config::ApiGeneration;
use crate::quoalise::Prm;
use crate::quoalise::contract::{Contract, Unavailable};

/// The contract of one request, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedContract {
    pub contract: Contract,
    /// HTTP requests sent to Enedis for it (0 when it came from the cache).
    pub calls: u32,
}

/// Reads one part's answer into the contract.
type ReadPart = fn(&[u8], &Prm, &mut Contract) -> Result<(), ShapeError>;

/// What may be missing of a part without failing the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The first part: only a 403 `900908` leaves it out.
    Main,
    /// A 404 (none at Enedis) leaves it out too.
    Secondary,
    /// The v5 address: any 403 leaves it out (the consent does not cover it).
    Address,
}

/// One call of a contract read.
struct Part {
    /// The API, as logged, counted and named in [`Unavailable::source`]: without
    /// the PRM.
    source: &'static str,
    call: DataCall,
    /// The fields of the payload this part gives.
    fields: &'static [&'static str],
    role: Role,
    read: ReadPart,
}

/// The calls of a contract read for `generation`.
fn parts(generation: ApiGeneration, prm: &Prm) -> Result<Vec<Part>, UpstreamError> {
    let itc = |source: &'static str, fields, role, read| {
        let path = format!("/{source}/{prm}");
        Part {
            source,
            call: DataCall {
                endpoint: source.to_owned(),
                path,
                query: Vec::new(),
            },
            fields,
            role,
            read,
        }
    };
    let customers = |source: &'static str, fields, role, read| Part {
        source,
        call: DataCall::new(
            format!("/{source}"),
            vec![("usage_point_id", prm.to_string())],
        ),
        fields,
        role,
        read,
    };
    match generation {
        ApiGeneration::Api2026 => Ok(vec![
            itc(
                "situation_contrat_auto/v1",
                &[
                    "segment",
                    "subscribed-power",
                    "tariff-option",
                    "contract-start",
                ],
                Role::Main,
                api2026::read_situation as ReadPart,
            ),
            itc(
                "synth_contrat_auto/v1",
                &["segment", "services-level", "activation", "last-change"],
                Role::Secondary,
                api2026::read_synthese,
            ),
            itc(
                "comptage_auto/v1",
                &["meter-type", "off-peak-hours"],
                Role::Secondary,
                api2026::read_comptage,
            ),
        ]),
        ApiGeneration::V5 => Ok(vec![
            customers(
                "customers_upc/v5/usage_points/contracts",
                &[
                    "segment",
                    "subscribed-power",
                    "tariff-option",
                    "off-peak-hours",
                    "meter-type",
                    "services-level",
                    "activation",
                    "last-change",
                ],
                Role::Main,
                v1::read_v5_contracts as ReadPart,
            ),
            customers(
                "customers_upa/v5/usage_points/addresses",
                &["address"],
                Role::Address,
                v1::read_v5_addresses,
            ),
        ]),
        ApiGeneration::V3 | ApiGeneration::V4 => Err(UpstreamError::NotImplemented(format!(
            "contract and technical data come from Enedis' contract APIs, which Data Connect \
             2026 (situation_contrat_auto, synth_contrat_auto, comptage_auto) and v5 \
             (customers_upc, customers_upa) have; this agent uses Enedis API {}, which has none",
            generation.as_str()
        ))),
    }
}

/// Why a refused part may be left out of the answer; `None` when the refusal
/// fails the request.
fn unavailable_reason(part: &Part, fault: &EnedisFault) -> Option<String> {
    if fault.status == 403 && fault.has_code("900908") {
        return Some(format!(
            "the agent's Enedis application is not subscribed to {}",
            part.source
        ));
    }
    match part.role {
        Role::Main => None,
        Role::Secondary if fault.status == 404 => {
            Some(format!("Enedis has no {} for this PRM", part.source))
        }
        Role::Address if fault.status == 403 => {
            Some("the consent given to Enedis does not cover the meter's address".to_owned())
        }
        Role::Secondary | Role::Address => None,
    }
}

impl EnedisClient {
    /// [`super::Upstream::contract`] of the client: every part of the
    /// generation at once, then read together.
    pub(super) async fn read_contract(
        &self,
        prm: Prm,
        ask: &Ask,
    ) -> Result<FetchedContract, UpstreamError> {
        let generation = self.shared.config.api;
        let parts = parts(generation, &prm)?;
        let auth = self.auth_for(prm).await?;
        let tally = Tally::new(ask.clone());
        let answers = futures::future::join_all(parts.iter().map(|part| {
            let call = Call {
                endpoint: part.call.endpoint.clone(),
                method: Method::GET,
                path: part.call.path.clone(),
                query: part.call.query.clone(),
                body: Body::None,
            };
            let tally = &tally;
            async move { self.authorized(auth, &call, tally).await }
        }))
        .await;
        let mut contract = Contract::new(prm, generation.as_str(), Timestamp::now().as_second());
        let mut refusals = Vec::new();
        let mut read = Vec::new();
        for (part, answer) in parts.iter().zip(answers) {
            let answer = answer?;
            if answer.is_success() {
                read.push((part, answer));
                continue;
            }
            let fault = answer.fault();
            match unavailable_reason(part, &fault) {
                Some(reason) => {
                    tracing::info!(%prm, endpoint = part.source, status = fault.status, code = ?fault.code, "part of the contract unavailable: {reason}");
                    contract.unavailable.push(Unavailable {
                        source: part.source.to_owned(),
                        fields: part.fields.iter().map(|f| (*f).to_owned()).collect(),
                        code: fault.code.clone(),
                        reason,
                    });
                    refusals.push(fault);
                }
                None => return Err(UpstreamError::Refused(fault)),
            }
        }
        if read.is_empty()
            && let Some(first) = refusals.into_iter().next()
        {
            // Nothing to answer with: Enedis' own refusal is the answer.
            return Err(UpstreamError::Refused(first));
        }
        for (part, answer) in read {
            (part.read)(&answer.body, &prm, &mut contract).map_err(|e| {
                UpstreamError::BadResponse {
                    endpoint: part.source.to_owned(),
                    status: answer.status,
                    problem: e.0,
                    // These answers hold personal data (names, addresses): no
                    // excerpt in logs or errors.
                    excerpt: None,
                }
            })?;
        }
        Ok(FetchedContract {
            contract,
            calls: tally.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(status: u16, code: &str) -> EnedisFault {
        EnedisFault {
            endpoint: "x".into(),
            status,
            code: Some(code.into()),
            message: String::new(),
        }
    }

    #[test]
    fn each_generation_has_its_calls_or_says_which_have() {
        let prm: Prm = "22516914714270".parse().unwrap();
        let paths = |g| {
            parts(g, &prm)
                .unwrap()
                .iter()
                .map(|p| (p.call.endpoint.clone(), p.call.path.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(ApiGeneration::Api2026)[0],
            (
                "situation_contrat_auto/v1".to_owned(),
                "/situation_contrat_auto/v1/22516914714270".to_owned()
            )
        );
        assert_eq!(paths(ApiGeneration::Api2026).len(), 3);
        assert_eq!(
            paths(ApiGeneration::V5)[1],
            (
                "customers_upa/v5/usage_points/addresses".to_owned(),
                "/customers_upa/v5/usage_points/addresses".to_owned()
            )
        );
        for g in [ApiGeneration::V3, ApiGeneration::V4] {
            let Err(UpstreamError::NotImplemented(text)) = parts(g, &prm) else {
                panic!("{g:?} has contract calls");
            };
            assert!(text.contains("2026") && text.contains("v5"), "{text}");
            assert!(text.contains(&format!("API {}", g.as_str())), "{text}");
        }
    }

    #[test]
    fn which_refusals_leave_a_part_out() {
        let prm: Prm = "22516914714270".parse().unwrap();
        let all = parts(ApiGeneration::V5, &prm).unwrap();
        let (main, address) = (&all[0], &all[1]);
        let itc = parts(ApiGeneration::Api2026, &prm).unwrap();
        let comptage = &itc[2];
        // Not subscribed: any part.
        assert!(unavailable_reason(main, &fault(403, "900908")).is_some());
        assert!(unavailable_reason(comptage, &fault(403, "900908")).is_some());
        // No consent: only the address.
        assert!(unavailable_reason(main, &fault(403, "ADAM-DC-0008")).is_none());
        assert!(unavailable_reason(comptage, &fault(403, "ADAM-DC-0008")).is_none());
        assert!(unavailable_reason(address, &fault(403, "ADAM-DC-0008")).is_some());
        // None at Enedis: not the main part.
        assert!(unavailable_reason(comptage, &fault(404, "404")).is_some());
        assert!(unavailable_reason(main, &fault(404, "404")).is_none());
        // Anything else fails.
        assert!(unavailable_reason(comptage, &fault(400, "ADAM-ERR0123")).is_none());
    }
}
