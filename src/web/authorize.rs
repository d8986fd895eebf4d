//! `GET /authorize?id=…[&duration=P…][&redirect_uri=…][&state=…][&test_client=0-9]`:
//! the page a consumer sees first.
//!
//! It shows the peer's name, logo and (sanitised) description, what data will be
//! shared (only what the peer's `[[peers]] scopes` let it receive) and until
//! when, and a link to the Enedis consent page carrying a fresh OAuth state. The state is stored with everything the return needs (peer,
//! duration, the peer's own state, the checked redirect URI), so nothing from this
//! query string is trusted again when Enedis sends the consumer back.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use jiff::Timestamp;

use super::html::{self, escape, french_date, french_duration, sanitize_description};
use super::redirect_uri::{RedirectUriError, check_redirect_uri};
use super::{Page, WebState, new_oauth_state, problem_page};
use crate::config::ApiGeneration;
use crate::quoalise::{Scope, Scopes, Series};
use crate::store::now_seconds;
use crate::store::oauth::{ConsentDescription, OAuthState, log_id};
use crate::time::{paris_date, paris_today};
use crate::upstream::ConsentDuration;

/// The duration asked when the peer names none.
pub const DEFAULT_DURATION: &str = "P1Y";
/// Longest peer `state`, in characters (it travels back in an XMPP message).
pub const MAX_PEER_STATE_CHARS: usize = 256;

/// The query of `/authorize`, each parameter at most once.
#[derive(Debug, Default)]
struct Query {
    id: Option<String>,
    duration: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    test_client: Option<String>,
}

fn bad_request(title: &str, explanation: &str, detail: Option<&str>) -> Page {
    problem_page(
        StatusCode::BAD_REQUEST,
        title,
        &format!("<p>{}</p>", escape(explanation)),
        detail,
    )
}

fn parse_query(raw: &str) -> Result<Query, Page> {
    let mut query = Query::default();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let slot = match key.as_ref() {
            "id" => &mut query.id,
            "duration" => &mut query.duration,
            "redirect_uri" => &mut query.redirect_uri,
            "state" => &mut query.state,
            "test_client" => &mut query.test_client,
            _ => continue,
        };
        if slot.is_some() {
            return Err(bad_request(
                "Lien d'autorisation invalide",
                &format!(
                    "Le paramètre « {key} » apparaît plusieurs fois dans l'adresse. \
                     Demandez un nouveau lien à l'application qui vous a envoyé ici."
                ),
                None,
            ));
        }
        let value = value.trim();
        if !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }
    Ok(query)
}

fn unknown_link() -> Page {
    problem_page(
        StatusCode::NOT_FOUND,
        "Lien d'autorisation inconnu",
        "<p>Ce lien ne correspond à aucune application. Il est peut-être incomplet, \
         ou l'application n'est plus autorisée. Demandez un nouveau lien à \
         l'application qui vous a envoyé ici.</p>",
        None,
    )
}

fn internal(detail: &str) -> Page {
    problem_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Erreur interne",
        "<p>La page n'a pas pu être préparée. Réessayez dans quelques instants.</p>",
        Some(detail),
    )
}

/// What the index series mean to a consumer (the 2026 API serves them; the v1
/// family does not).
const INDEX_LABEL: &str = "les index de votre compteur (ses relevés), et votre consommation de chaque jour par période tarifaire (heures pleines, heures creuses, jours Tempo…)";

/// What the peer will receive, as a consumer reads it: each series its scopes
/// let it receive, in the order a consumer reads them, the indexes when the API
/// serves them (`indexes`) and the scopes include them, then the contract
/// (`get_contract`) and the meter's address when its scopes include them.
fn shared_data(scopes: Scopes, indexes: bool) -> Vec<&'static str> {
    let mut data: Vec<&'static str> = series_labels()
        .into_iter()
        .filter(|(series, _)| scopes.allows(*series))
        .map(|(_, label)| label)
        .collect();
    if indexes && scopes.contains(Scope::Index) {
        data.push(INDEX_LABEL);
    }
    if scopes.contains(Scope::Contract) {
        data.push(
            "les caractéristiques de votre contrat et de votre compteur (puissance \
             souscrite, option tarifaire, heures creuses)",
        );
    }
    if scopes.contains(Scope::Identity) {
        data.push("l'adresse de votre compteur");
    }
    data
}

/// What each series means to a consumer, in the order a consumer reads them.
fn series_labels() -> [(Series, &'static str); 5] {
    let label = |series: Series| match series {
        Series::ConsumptionEnergyDaily => "votre consommation jour par jour",
        Series::ConsumptionPower => {
            "votre courbe de charge (puissance moyenne toutes les 10 à 60 minutes)"
        }
        Series::ConsumptionMaxPower => "votre puissance maximale de chaque jour",
        Series::ProductionEnergyDaily => "votre production jour par jour, si vous en avez",
        Series::ProductionPower => "votre courbe de production, si vous en avez",
        // Enedis SGE's, whose consents are declared, not given on this page.
        Series::CorrectedPower(_) => "votre courbe de charge corrigée par Enedis",
        Series::ReactivePower(_) => "votre puissance réactive",
        Series::EnergyIndex(_) | Series::ClassIndex(..) | Series::ClassEnergyDaily(..) => {
            INDEX_LABEL
        }
    };
    [
        Series::ConsumptionEnergyDaily,
        Series::ConsumptionPower,
        Series::ConsumptionMaxPower,
        Series::ProductionEnergyDaily,
        Series::ProductionPower,
    ]
    .map(|s| (s, label(s)))
}

pub async fn handle(State(web): State<WebState>, RawQuery(raw): RawQuery) -> Page {
    match authorize(&web, raw.as_deref().unwrap_or("")).await {
        Ok(page) | Err(page) => page,
    }
}

async fn authorize(web: &WebState, raw: &str) -> Result<Page, Page> {
    let query = parse_query(raw)?;
    let Some(id) = query.id else {
        return Err(bad_request(
            "Lien d'autorisation incomplet",
            "Il manque l'identifiant de l'application (paramètre « id »). Demandez un \
             nouveau lien à l'application qui vous a envoyé ici.",
            None,
        ));
    };
    // The id is a lookup key only: anything that is not one of ours is unknown.
    if id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(unknown_link());
    }
    let description = web
        .store()
        .call(move |s| s.description(&id))
        .await
        .map_err(|e| internal(&e.to_string()))?
        .ok_or_else(unknown_link)?;
    let Some(allowed_uris) = web.peers().redirect_uris(&description.owner) else {
        tracing::info!(owner = %description.owner, "consent page of a peer no longer configured");
        return Err(unknown_link());
    };
    let scopes = web
        .peers()
        .scopes(&description.owner)
        .unwrap_or(Scopes::NONE);

    let test_client = match query.test_client.as_deref() {
        None => None,
        Some(_) if !web.settings().sandbox => {
            return Err(bad_request(
                "Paramètre refusé",
                "Le paramètre « test_client » ne sert qu'aux essais dans le bac à sable \
                 d'Enedis ; ce service est en production.",
                None,
            ));
        }
        Some(d) if d.len() == 1 && d.as_bytes()[0].is_ascii_digit() => Some(d.as_bytes()[0] - b'0'),
        Some(d) => {
            return Err(bad_request(
                "Paramètre invalide",
                "Le paramètre « test_client » doit être un chiffre de 0 à 9.",
                Some(&d.chars().take(20).collect::<String>()),
            ));
        }
    };

    let now = now_seconds();
    let today = paris_today(Timestamp::now());
    let duration_text = query.duration.as_deref().unwrap_or(DEFAULT_DURATION);
    let duration = ConsentDuration::parse_at(duration_text, today).map_err(|e| {
        bad_request(
            "Durée invalide",
            "La durée demandée pour l'accès à vos données n'est pas valable : Enedis \
             accepte une durée ISO 8601 (par exemple P1Y pour un an, P6M pour six mois) \
             d'au plus trois ans.",
            Some(&e.to_string()),
        )
    })?;

    let redirect_uri = match query.redirect_uri.as_deref() {
        None => None,
        Some(requested) => match check_redirect_uri(requested, &allowed_uris) {
            Ok(url) => Some(url),
            Err(why) => {
                tracing::warn!(owner = %description.owner, reason = %why, "refused a redirect_uri on the consent page");
                let explanation = match why {
                    RedirectUriError::NotAllowed | RedirectUriError::NoneConfigured => format!(
                        "Après Enedis, ce lien vous renverrait vers une adresse que \
                         l'application <strong>{}</strong> n'a pas déclarée.",
                        escape(&description.name)
                    ),
                    other => format!(
                        "L'adresse de retour demandée par ce lien est refusée : {}.",
                        escape(&other.to_string())
                    ),
                };
                return Err(problem_page(
                    StatusCode::BAD_REQUEST,
                    "Adresse de retour refusée",
                    &format!(
                        "<p>{explanation} Par prudence, la demande s'arrête là. Si vous \
                         pensez qu'il s'agit d'une erreur, contactez l'application.</p>"
                    ),
                    Some(&requested.chars().take(300).collect::<String>()),
                ));
            }
        },
    };

    if let Some(state) = &query.state
        && (state.chars().count() > MAX_PEER_STATE_CHARS || state.chars().any(char::is_control))
    {
        return Err(bad_request(
            "Lien d'autorisation invalide",
            &format!(
                "Le paramètre « state » doit tenir sur une ligne d'au plus \
                 {MAX_PEER_STATE_CHARS} caractères."
            ),
            None,
        ));
    }

    let end = duration
        .end_from(now)
        .ok()
        .and_then(|end| paris_date(end).ok());
    let state = new_oauth_state(test_client);
    let ttl = i64::try_from(web.settings().state_ttl.as_secs()).unwrap_or(1800);
    let record = OAuthState {
        state: state.clone(),
        description_id: description.id.clone(),
        owner: description.owner.clone(),
        duration: duration.as_str().to_owned(),
        peer_state: query.state.clone(),
        redirect_uri: redirect_uri.as_ref().map(|u| u.to_string()),
        created_at: now,
        expires_at: now + ttl.max(1),
    };
    let enedis = web
        .upstream()
        .authorize_url(&state, &duration)
        .map_err(|e| internal(&e.to_string()))?;
    let max_live = web.settings().max_live_states;
    let created = web
        .store()
        .call(move |s| s.create_oauth_state(&record, max_live))
        .await
        .map_err(|e| internal(&e.to_string()))?;
    if !created {
        tracing::warn!("too many consent requests in progress; consent page refused");
        return Err(problem_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service momentanément saturé",
            "<p>Trop de demandes d'autorisation sont en cours. Réessayez dans quelques \
             minutes.</p>",
            None,
        ));
    }
    tracing::info!(
        owner = %description.owner,
        description = %description.id,
        state = %log_id(&state),
        duration = %duration,
        test_client = ?test_client,
        redirect = redirect_uri.is_some(),
        scopes = %scopes,
        "consent page served"
    );
    Ok(consent_page(
        &description,
        shared_data(
            scopes,
            web.upstream().generation() == ApiGeneration::Api2026,
        ),
        &duration,
        end,
        enedis.as_str(),
        test_client,
        web.settings().state_ttl.as_secs() / 60,
    ))
}

fn consent_page(
    description: &ConsentDescription,
    data: Vec<&'static str>,
    duration: &ConsentDuration,
    end: Option<jiff::civil::Date>,
    enedis_url: &str,
    test_client: Option<u8>,
    ttl_minutes: u64,
) -> Page {
    let logo = description
        .logo_url
        .as_deref()
        .filter(|u| u.starts_with("https://"))
        .map(|u| {
            format!(
                "<img src=\"{}\" alt=\"\" width=\"64\" height=\"64\">",
                escape(u)
            )
        })
        .unwrap_or_default();
    let name = escape(&description.name);
    let text = sanitize_description(&description.description);
    let text = if text.trim().is_empty() {
        String::new()
    } else {
        format!("<div class=\"description\">{text}</div>")
    };
    let data = if data.is_empty() {
        format!(
            "<p>Enedis ne transmettra à {name} aucune donnée de vos compteurs : cet \
             accès ne lui en ouvre aucune.</p>"
        )
    } else {
        let items: String = data
            .iter()
            .map(|label| format!("<li>{}</li>", escape(label)))
            .collect();
        format!(
            "<p>Enedis transmettra à {name}, pour chacun des compteurs que vous \
             choisirez :</p>\n<ul class=\"data\">{items}</ul>"
        )
    };
    let until = end
        .map(|d| format!(", jusqu'au <strong>{}</strong>", french_date(d)))
        .unwrap_or_default();
    let sandbox = test_client
        .map(|d| format!("<p class=\"small\">Bac à sable Enedis : client de test n°{d}.</p>"))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="card">
<div class="app">{logo}<span class="name">{name}</span></div>
<h1>{name} souhaite accéder aux données de votre compteur Linky</h1>
{text}
<h2>Données partagées</h2>
{data}
<p class="period">Pendant <strong>{duration}</strong>{until}. Vous pourrez retirer votre accord à tout moment depuis votre espace client Enedis.</p>
<p>Vous allez être redirigé vers le site d'Enedis pour vous identifier et donner votre accord.</p>
<a class="button" id="enedis" href="{enedis}">Continuer vers Enedis</a>
{sandbox}<p class="small">Ce lien est valable {ttl_minutes} minutes.</p>
</div>"#,
        duration = escape(&french_duration(duration.as_str())),
        enedis = escape(enedis_url),
    );
    Page {
        status: StatusCode::OK,
        html: html::page(
            &format!("{} — autorisation d'accès à vos données", description.name),
            &body,
        ),
    }
}
