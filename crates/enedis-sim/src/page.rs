//! The consent page: plain HTML that works without JavaScript and reads on a phone.
//!
//! It shows who asks, for how long and for which PRM(s), with "Accepter" and
//! "Refuser" buttons; each is a form posting the decision back to the same path.
//! Without a sandbox profile (state not ending in a digit) the tester types the
//! PRM(s) to consent for.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Span;

use super::catalogue::PROFILES;
use super::consent_request::{AuthRequest, Version};

/// Escape text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "1 an", "2 ans et 6 mois", "1095 jours"…
///
/// The agent's consent page (`web::html::french_duration`) words durations the same
/// way, and so does `escape` there: a deliberate copy. This page imitates Enedis'
/// portal, the agent's imitates nothing, and sharing them would tie the independent
/// simulator to the product for twenty lines.
fn human_duration(duration: &str) -> String {
    let Ok(span) = duration.parse::<Span>() else {
        return duration.to_owned();
    };
    let mut parts = Vec::new();
    let mut unit = |n: i64, one: &str, many: &str| {
        if n > 0 {
            parts.push(format!("{n} {}", if n == 1 { one } else { many }));
        }
    };
    unit(i64::from(span.get_years()), "an", "ans");
    unit(i64::from(span.get_months()), "mois", "mois");
    unit(i64::from(span.get_weeks()), "semaine", "semaines");
    unit(i64::from(span.get_days()), "jour", "jours");
    match parts.len() {
        0 => duration.to_owned(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} et {last}", parts.join(", "))
        }
    }
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

/// Render the page for `req`, with an error message when a decision was refused.
pub fn consent_page(req: &AuthRequest, error: Option<&str>, status: StatusCode) -> Response {
    let mut fields = String::new();
    fields.push_str(&hidden("client_id", &req.client_id));
    fields.push_str(&hidden("response_type", "code"));
    fields.push_str(&hidden("duration", &req.duration));
    if let Some(s) = &req.state {
        fields.push_str(&hidden("state", s));
    }
    if let Some(r) = &req.redirect_param {
        fields.push_str(&hidden("redirect_uri", r));
    }

    let profile = req.profile.and_then(|d| PROFILES.get(usize::from(d)));
    let who = match profile {
        Some(p) if p.prms.is_empty() => format!(
            "<p class=\"note\">Client de test n°{} du bac à sable : {}. \
             Quel que soit le bouton, la réponse sera un refus.</p>",
            p.digit,
            escape(p.summary)
        ),
        Some(p) => {
            let list: String = p
                .prms
                .iter()
                .map(|prm| format!("<li><code>{prm}</code></li>"))
                .collect();
            format!(
                "<p class=\"note\">Client de test n°{} du bac à sable : {}.</p>\
                 <p>Point(s) de livraison concerné(s) :</p><ul class=\"prms\">{list}</ul>",
                p.digit,
                escape(p.summary)
            )
        }
        None => "<p><label for=\"prms\">Numéro(s) de PRM (point de livraison, 14 chiffres ; \
                 plusieurs séparés par des virgules) :</label><br>\
                 <input type=\"text\" id=\"prms\" name=\"prms\" inputmode=\"numeric\" \
                 autocomplete=\"off\" placeholder=\"22516914714270\"></p>"
            .to_owned(),
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let generation = match req.version {
        Version::V1 => "Data Connect v1",
        Version::V2 => "Data Connect 2026",
    };
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Enedis (simulateur) — Autorisation d'accès à vos données</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1d2733; }}
main {{ max-width: 34rem; margin: 0 auto; padding: 1rem; }}
h1 {{ font-size: 1.4rem; }}
header {{ background: #1423dc; color: #fff; padding: .8rem 1rem; font-weight: bold; }}
.card {{ background: #fff; border-radius: .5rem; padding: 1rem 1.2rem; box-shadow: 0 1px 3px #0002; }}
.note {{ background: #eef2ff; padding: .5rem .7rem; border-radius: .3rem; }}
.error {{ background: #fde8e8; color: #8a1111; padding: .5rem .7rem; border-radius: .3rem; }}
input[type=text] {{ width: 100%; box-sizing: border-box; font-size: 1.1rem; padding: .5rem; }}
.buttons {{ display: flex; gap: .8rem; flex-wrap: wrap; margin-top: 1rem; }}
button {{ flex: 1 1 10rem; font-size: 1.1rem; padding: .8rem; border-radius: .4rem; border: 0; cursor: pointer; }}
button.accept {{ background: #1423dc; color: #fff; }}
button.refuse {{ background: #dde1e6; color: #1d2733; }}
code {{ font-size: 1.05rem; }}
</style>
</head>
<body>
<header>Enedis — simulateur ({generation})</header>
<main>
<div class="card">
<h1>Autorisation d'accès à vos données de consommation</h1>
<p>L'application <strong>{client}</strong> demande à accéder aux données de votre compteur Linky
pendant <strong>{duration}</strong>, soit jusqu'au <strong>{until}</strong> :
consommation et production quotidiennes, courbe de charge, puissance maximale.</p>
{error}
<form method="post" action="{action}">
{fields}
{who}
<div class="buttons">
<button class="accept" type="submit" name="decision" value="accept">Accepter</button>
<button class="refuse" type="submit" name="decision" value="refuse">Refuser</button>
</div>
</form>
</div>
</main>
</body>
</html>
"#,
        generation = generation,
        client = escape(&req.client_id),
        duration = escape(&human_duration(&req.duration)),
        until = req.expires,
        error = error,
        action = req.version.path(),
        fields = fields,
        who = who,
    );
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_french() {
        assert_eq!(human_duration("P1Y"), "1 an");
        assert_eq!(human_duration("P2Y6M"), "2 ans et 6 mois");
        assert_eq!(human_duration("P1095D"), "1095 jours");
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
