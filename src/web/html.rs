//! HTML for the consent pages: escaping of every interpolated value, the
//! sanitiser for the descriptions peers submit, the page frame, and French words
//! for dates and durations.
//!
//! Pages are built with `format!` and [`escape`], never by pasting raw input: the
//! only HTML that comes from outside is a peer's description, and it goes through
//! [`sanitize_description`] (ammonia, a maintained html5ever-based sanitiser) with
//! an allow-list of harmless tags.

use std::collections::{HashMap, HashSet};

use jiff::Span;
use jiff::civil::Date;

/// Escape text for HTML content and for quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
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

/// Tags a description may use: text structure and links, nothing that runs, loads
/// or styles anything.
const DESCRIPTION_TAGS: &[&str] = &[
    "p",
    "br",
    "a",
    "strong",
    "em",
    "b",
    "i",
    "u",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "h2",
    "h3",
    "h4",
];

/// A peer's description as safe HTML.
///
/// - HTML keeps paragraphs, lists, emphasis and links; links keep only `href`
///   (http, https, mailto; never relative, never `javascript:`) and `title`, and
///   get `rel="noopener noreferrer nofollow"`. Scripts and styles are dropped with
///   their content; event handlers, `style`, images and everything else go.
/// - Plain text (no tag at all) keeps its layout: blank lines separate
///   paragraphs, single newlines become line breaks.
pub fn sanitize_description(input: &str) -> String {
    if !input.contains('<') {
        return plain_text_paragraphs(input);
    }
    let tags: HashSet<&str> = DESCRIPTION_TAGS.iter().copied().collect();
    let mut attributes: HashMap<&str, HashSet<&str>> = HashMap::new();
    attributes.insert("a", ["href", "title"].into_iter().collect());
    ammonia::Builder::new()
        .tags(tags)
        .tag_attributes(attributes)
        .generic_attributes(HashSet::new())
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean_content_tags(["script", "style"].into_iter().collect())
        .strip_comments(true)
        .clean(input)
        .to_string()
}

fn plain_text_paragraphs(input: &str) -> String {
    let normalised = input.replace("\r\n", "\n");
    normalised
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let lines: Vec<String> = p.lines().map(|l| escape(l.trim())).collect();
            format!("<p>{}</p>", lines.join("<br>"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A whole page: the frame every consent page shares (phone-friendly viewport,
/// the served stylesheet, no script), around `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<link rel="stylesheet" href="static/consent.css">
</head>
<body>
<main>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
        body = body,
    )
}

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// "4 octobre 2027", "1er mars 2027".
pub fn french_date(date: Date) -> String {
    let day = if date.day() == 1 {
        "1er".to_owned()
    } else {
        date.day().to_string()
    };
    let month = MONTHS
        .get(usize::try_from(date.month() - 1).unwrap_or(0))
        .copied()
        .unwrap_or("");
    format!("{day} {month} {}", date.year())
}

/// "1 an", "2 ans et 6 mois", "90 jours"; the ISO text when it has no such parts.
pub fn french_duration(iso: &str) -> String {
    let Ok(span) = iso.parse::<Span>() else {
        return iso.to_owned();
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
        0 => iso.to_owned(),
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} et {last}", parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn keeps_paragraphs_and_links_and_drops_what_runs() {
        let out = sanitize_description(
            r#"<p onclick="steal()">Bonjour <strong>vous</strong></p>
<script>alert(1)</script><style>p{}</style>
<p><a href="https://app.example.org/cgu" onmouseover="x()">conditions</a>
<a href="javascript:alert(1)">piège</a> <a href="/relative">rel</a></p>
<img src="https://evil.example/x.png" onerror="alert(1)"><iframe src="https://evil.example"></iframe>"#,
        );
        assert!(
            out.contains("<p>Bonjour <strong>vous</strong></p>"),
            "{out}"
        );
        assert!(
            out.contains(
                r#"<a href="https://app.example.org/cgu" rel="noopener noreferrer nofollow">conditions</a>"#
            ),
            "{out}"
        );
        for banned in [
            "script",
            "alert",
            "style",
            "onclick",
            "onmouseover",
            "onerror",
            "javascript",
            "img",
            "iframe",
            "/relative",
        ] {
            assert!(!out.contains(banned), "{banned} in {out}");
        }
        // The text of a removed link stays, harmless.
        assert!(out.contains("piège"), "{out}");
    }

    #[test]
    fn plain_text_keeps_its_paragraphs_and_is_escaped() {
        assert_eq!(
            sanitize_description("Bonjour\nà vous\n\nDeuxième & dernier"),
            "<p>Bonjour<br>à vous</p>\n<p>Deuxième &amp; dernier</p>"
        );
    }

    #[test]
    fn dates_and_durations_read_in_french() {
        assert_eq!(french_date(date(2027, 10, 4)), "4 octobre 2027");
        assert_eq!(french_date(date(2027, 3, 1)), "1er mars 2027");
        assert_eq!(french_duration("P1Y"), "1 an");
        assert_eq!(french_duration("P2Y6M"), "2 ans et 6 mois");
        assert_eq!(french_duration("P90D"), "90 jours");
    }
}
