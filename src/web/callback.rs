//! `GET /redirect`: the consumer comes back from Enedis.
//!
//! | generation | success query | handled by |
//! |---|---|---|
//! | v3, v4 | `code`, `state`, `usage_point_id` | code exchanged AT ONCE (valid 180 s), tokens stored with the consent |
//! | v5 | `code` (unused), `state`, `usage_point_id` | PRMs from the query |
//! | 2026 | `autorisation_id`, `state` | PRMs and validity from `subscribed_services` (ACTIF only, deduplicated) |
//!
//! Refusals and portal errors come back WITHOUT `state`
//! (`?code=403&error=access_denied&…`, `?code=500&error=server_error&…`): the
//! consumer gets a page in French saying what happened. A state that is unknown,
//! expired or already used gets its own page, and nothing is stored.
//!
//! On success the consent is stored (owner = the peer), the peer gets its XMPP
//! notification, and the consumer goes back to the peer's redirect URI with
//! `usage_points=…` (303), or sees a confirmation page.

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::html::{self, escape, french_date};
use super::notify::ConsentNotification;
use super::redirect_uri::{check_redirect_uri, with_usage_points};
use super::{Page, WebState, problem_page};
use crate::store::oauth::{Consumed, OAuthState, log_id};
use crate::store::{Consent, now_seconds};
use crate::time::{paris_date, paris_today};
use crate::upstream::{Callback, ConsentDuration, UpstreamError};

/// Longest state we look up; ours are 33 characters.
const MAX_STATE_LEN: usize = 100;

pub async fn handle(State(web): State<WebState>, RawQuery(raw): RawQuery) -> Response {
    let callback = Callback::from_query(raw.as_deref().unwrap_or(""));
    match complete(&web, &callback).await {
        Ok(response) | Err(response) => response,
    }
}

async fn complete(web: &WebState, callback: &Callback) -> Result<Response, Response> {
    if let Some(error) = &callback.error {
        // Enedis sends refusals without state; should one come with a state, spend
        // it so the trip cannot be replayed.
        if let Some(state) = callback.state.clone().filter(|s| s.len() <= MAX_STATE_LEN) {
            let now = now_seconds();
            let _ = web
                .store()
                .call(move |s| s.consume_oauth_state(&state, now))
                .await;
        }
        // Debug formatting: these come from the query string, and must not be able
        // to forge a log line.
        tracing::info!(
            error = ?error,
            description = ?callback.error_description.as_deref().unwrap_or(""),
            "Enedis sent the consumer back without consent"
        );
        return Err(refusal_page(error, callback.error_description.as_deref()).into_response());
    }
    let Some(state) = callback.state.clone() else {
        return Err(problem_page(
            StatusCode::BAD_REQUEST,
            "Réponse d'Enedis incomplète",
            "<p>Le retour du site d'Enedis ne contient pas l'identifiant de votre demande \
             (paramètre « state »). Recommencez depuis l'application qui vous a envoyé \
             vers Enedis.</p>",
            None,
        )
        .into_response());
    };
    let record = consume(web, state).await?;
    let state_id = record.log_id();

    let restart = restart_link(web, &record);
    let Some(allowed) = web.peers().redirect_uris(&record.owner) else {
        tracing::warn!(owner = %record.owner, state = %state_id, "consent return for a peer no longer configured; nothing stored");
        return Err(problem_page(
            StatusCode::FORBIDDEN,
            "Application plus autorisée",
            "<p>L'application qui a demandé cet accès n'est plus autorisée sur ce \
             service ; votre accord n'a pas été enregistré. Vous pouvez le retirer depuis \
             votre espace client Enedis.</p>",
            None,
        )
        .into_response());
    };
    let duration = ConsentDuration::parse_at(&record.duration, paris_today(jiff::Timestamp::now()))
        .map_err(|e| {
            problem_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Erreur interne",
                &format!("<p>La durée demandée n'est plus valable. {restart}</p>"),
                Some(&e.to_string()),
            )
            .into_response()
        })?;

    let consent = web
        .upstream()
        .resolve_consent(&record.owner, callback, &duration)
        .await
        .map_err(|e| {
            tracing::warn!(owner = %record.owner, state = %state_id, error = %e, "consent could not be resolved");
            resolve_failure_page(&e, &restart).into_response()
        })?;
    let prms: Vec<String> = consent.prms.iter().map(|p| p.to_string()).collect();
    tracing::info!(
        owner = %record.owner,
        consent = consent.id,
        generation = consent.generation.as_str(),
        prms = %prms.join(","),
        state = %state_id,
        "consent granted through the consent page"
    );

    let notification = ConsentNotification {
        usage_points: prms.clone(),
        peer_state: record.peer_state.clone(),
    };
    if let Err(e) = web.notifier().notify(&record.owner, &notification).await {
        // The consent is stored and listed by list_usage_points anyway.
        tracing::error!(owner = %record.owner, consent = consent.id, error = %e, "cannot notify the peer of its new consent");
    }

    // Checked when the state was made; checked again against today's configuration.
    let back = record
        .redirect_uri
        .as_deref()
        .and_then(|uri| check_redirect_uri(uri, &allowed).ok());
    match back {
        Some(uri) => Ok(see_other(&with_usage_points(&uri, &prms))),
        None => {
            let name = description_name(web, &record).await;
            Ok(confirmation_page(&name, &consent).into_response())
        }
    }
}

/// Spend the state; the page for a state we cannot honour.
async fn consume(web: &WebState, state: String) -> Result<OAuthState, Response> {
    let unknown = || {
        problem_page(
            StatusCode::BAD_REQUEST,
            "Demande inconnue",
            "<p>Ce retour d'Enedis ne correspond à aucune demande en cours sur ce \
             service. Recommencez depuis l'application qui vous a envoyé vers Enedis.</p>",
            None,
        )
        .into_response()
    };
    if state.len() > MAX_STATE_LEN {
        return Err(unknown());
    }
    let shown = log_id(&state);
    let now = now_seconds();
    let consumed = web
        .store()
        .call(move |s| s.consume_oauth_state(&state, now))
        .await
        .map_err(|e| {
            problem_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Erreur interne",
                "<p>Votre retour n'a pas pu être enregistré. Réessayez dans quelques \
                 instants depuis l'application.</p>",
                Some(&e.to_string()),
            )
            .into_response()
        })?;
    match consumed {
        Consumed::Fresh(record) => Ok(record),
        Consumed::Expired { .. } => {
            tracing::info!(state = %shown, "consent return with an expired state; nothing stored");
            Err(problem_page(
                StatusCode::BAD_REQUEST,
                "Demande expirée",
                &format!(
                    "<p>Plus de {} minutes se sont écoulées depuis le début de votre \
                     demande : par sécurité, elle n'est plus valable et rien n'a été \
                     enregistré. Recommencez depuis l'application qui vous a envoyé vers \
                     Enedis.</p>",
                    web.settings().state_ttl.as_secs().div_ceil(60)
                ),
                None,
            )
            .into_response())
        }
        Consumed::AlreadyUsed { .. } => {
            tracing::info!(state = %shown, "consent return with a state already used; nothing stored");
            Err(problem_page(
                StatusCode::BAD_REQUEST,
                "Demande déjà traitée",
                "<p>Ce retour d'Enedis a déjà été traité : une même demande ne sert qu'une \
                 fois. Si vous venez de donner votre accord, il a bien été pris en compte \
                 la première fois.</p>",
                None,
            )
            .into_response())
        }
        Consumed::Unknown => {
            tracing::info!(state = %shown, "consent return with an unknown state; nothing stored");
            Err(unknown())
        }
    }
}

/// Enedis's refusal (no state): what the consumer sees.
fn refusal_page(error: &str, description: Option<&str>) -> Page {
    let detail = match description {
        Some(d) => format!("{error} ({d})"),
        None => error.to_owned(),
    };
    match error {
        "access_denied" => problem_page(
            StatusCode::OK,
            "Accès refusé",
            "<p>Vous avez refusé l'accès à vos données sur le site d'Enedis : aucune \
             donnée ne sera transmise. Vous pouvez fermer cette page, ou recommencer \
             depuis l'application si c'était une erreur.</p>",
            Some(&detail),
        ),
        "server_error" | "temporarily_unavailable" => problem_page(
            StatusCode::BAD_GATEWAY,
            "Le site d'Enedis a rencontré une erreur",
            "<p>Le portail d'Enedis n'a pas pu recueillir votre accord, à cause d'une \
             panne de son côté. Aucune donnée n'est transmise. Réessayez plus tard depuis \
             l'application qui vous a envoyé vers Enedis.</p>",
            Some(&detail),
        ),
        _ => problem_page(
            StatusCode::BAD_GATEWAY,
            "Autorisation non accordée",
            "<p>Enedis n'a pas accordé l'accès à vos données. Aucune donnée n'est \
             transmise. Recommencez depuis l'application qui vous a envoyé vers Enedis.</p>",
            Some(&detail),
        ),
    }
}

/// A link to start again with the same parameters (the state is spent).
fn restart_link(web: &WebState, record: &OAuthState) -> String {
    let base = format!("{}/authorize", web.settings().public_url);
    let Ok(mut url) = Url::parse(&base) else {
        return String::new();
    };
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("id", &record.description_id);
        query.append_pair("duration", &record.duration);
        if let Some(uri) = &record.redirect_uri {
            query.append_pair("redirect_uri", uri);
        }
        if let Some(state) = &record.peer_state {
            query.append_pair("state", state);
        }
        if web.settings().sandbox
            && let Some(digit) = record.state.chars().last().filter(char::is_ascii_digit)
        {
            query.append_pair("test_client", &digit.to_string());
        }
    }
    format!(
        "<a class=\"button\" href=\"{}\">Recommencer</a>",
        escape(url.as_str())
    )
}

fn resolve_failure_page(error: &UpstreamError, restart: &str) -> Page {
    let detail = error.to_string();
    match error {
        UpstreamError::ConsentRefused { .. } => problem_page(
            StatusCode::BAD_GATEWAY,
            "Accès non ouvert par Enedis",
            &format!(
                "<p>Enedis n'a ouvert l'accès à aucun compteur pour cette autorisation \
                 (elle a peut-être été retirée aussitôt). Rien n'a été enregistré.</p>{restart}"
            ),
            Some(&detail),
        ),
        UpstreamError::Unavailable { .. }
        | UpstreamError::Quota { .. }
        | UpstreamError::BadResponse { .. } => problem_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Enedis est momentanément indisponible",
            &format!(
                "<p>Votre accord n'a pas pu être confirmé auprès d'Enedis, qui ne répond \
                 pas correctement pour l'instant. Rien n'a été enregistré. Réessayez dans \
                 quelques minutes.</p>{restart}"
            ),
            Some(&detail),
        ),
        UpstreamError::Refused(_)
        | UpstreamError::BadConsentRequest(_)
        | UpstreamError::NotAuthorized(_)
        | UpstreamError::BadWindow(_)
        | UpstreamError::Unsupported(_) => problem_page(
            StatusCode::BAD_GATEWAY,
            "Enedis n'a pas confirmé votre accord",
            &format!(
                "<p>La réponse d'Enedis n'a pas permis de confirmer votre accord ; rien n'a \
                 été enregistré. Recommencez la demande.</p>{restart}"
            ),
            Some(&detail),
        ),
        // NotImplemented: consent resolution exists in every generation; never here.
        UpstreamError::Store(_)
        | UpstreamError::Config(_)
        | UpstreamError::Internal(_)
        | UpstreamError::NotImplemented(_) => problem_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Erreur interne",
            &format!(
                "<p>Votre accord n'a pas pu être enregistré à cause d'une erreur de ce \
                     service. Réessayez dans quelques minutes.</p>{restart}"
            ),
            Some(&detail),
        ),
    }
}

async fn description_name(web: &WebState, record: &OAuthState) -> String {
    let id = record.description_id.clone();
    web.store()
        .call(move |s| s.description(&id))
        .await
        .ok()
        .flatten()
        .map(|d| d.name)
        .unwrap_or_else(|| record.owner.clone())
}

fn confirmation_page(name: &str, consent: &Consent) -> Page {
    let prms: String = consent
        .prms
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p.as_str())))
        .collect();
    let until = paris_date(consent.valid_until)
        .map(|d| format!(" jusqu'au <strong>{}</strong>", french_date(d)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="card success">
<h1>Merci, votre accord est enregistré</h1>
<p><strong>{name}</strong> peut désormais accéder aux données de {count}{until} :</p>
<ul class="prms">{prms}</ul>
<p>Vous pouvez fermer cette page. Vous pourrez retirer votre accord à tout moment depuis votre espace client Enedis.</p>
</div>"#,
        name = escape(name),
        count = if consent.prms.len() == 1 {
            "ce compteur".to_owned()
        } else {
            format!("ces {} compteurs", consent.prms.len())
        },
    );
    Page {
        status: StatusCode::OK,
        html: html::page("Accord enregistré", &body),
    }
}

fn see_other(url: &Url) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response()
}
