//! Registering what a consumer is shown: the `get_authorize_uri` command and the
//! `authorize-url` command line both call [`register`], which checks the fields,
//! stores the description owned by the peer and returns the authorize URI.

use url::Url;

use crate::store::oauth::{ConsentDescription, NewDescription};
use crate::store::{Store, StoreError, now_seconds};

/// Longest application name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest logo URL, in bytes.
pub const MAX_LOGO_URL_BYTES: usize = 2000;
/// Longest description, in bytes (HTML as submitted).
pub const MAX_DESCRIPTION_BYTES: usize = 20_000;

/// A field of the description that cannot be used; the text names the field.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    #[error("field '{field}': {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DescriptionError {
    DescriptionError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// What a peer submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptionInput {
    pub name: String,
    pub logo_url: Option<String>,
    pub description: String,
}

impl DescriptionInput {
    /// The checked fields, trimmed: a name of 1 to 100 characters without control
    /// characters, an https logo URL if any, a description of at most 20 000 bytes.
    pub fn validate(&self, owner: &str) -> Result<NewDescription, DescriptionError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(invalid("name", "the application's name is empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(
                "name",
                format!("at most {MAX_NAME_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("name", "a single line without control characters"));
        }
        let logo_url = match self.logo_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => Some(check_logo_url(raw)?),
        };
        let description = self.description.trim();
        if description.len() > MAX_DESCRIPTION_BYTES {
            return Err(invalid(
                "description",
                format!(
                    "at most {MAX_DESCRIPTION_BYTES} bytes, got {}",
                    description.len()
                ),
            ));
        }
        Ok(NewDescription {
            owner: owner.to_owned(),
            name: name.to_owned(),
            logo_url,
            description: description.to_owned(),
        })
    }
}

/// An absolute https URL with a host, without credentials.
fn check_logo_url(raw: &str) -> Result<String, DescriptionError> {
    if raw.len() > MAX_LOGO_URL_BYTES {
        return Err(invalid(
            "logo_url",
            format!("at most {MAX_LOGO_URL_BYTES} bytes"),
        ));
    }
    let url = Url::parse(raw).map_err(|e| invalid("logo_url", format!("not a URL ({e})")))?;
    if url.scheme() != "https" {
        return Err(invalid(
            "logo_url",
            format!("must be an https URL, not {}", url.scheme()),
        ));
    }
    if !url.has_host() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "logo_url",
            "must name a host and carry no credentials",
        ));
    }
    Ok(url.to_string())
}

/// A fresh identifier: 22 random letters and digits (131 bits), URL-safe.
pub fn new_description_id() -> String {
    super::random_alphanumeric(22)
}

/// `<public_url>/authorize?id=<id>`.
pub fn authorize_uri(public_url: &str, id: &str) -> String {
    let base = format!("{}/authorize", public_url.trim_end_matches('/'));
    match Url::parse(&base) {
        Ok(mut url) => {
            url.query_pairs_mut().append_pair("id", id);
            url.to_string()
        }
        // public_url is validated by the configuration; keep a usable answer anyway.
        Err(_) => format!("{base}?id={id}"),
    }
}

/// Check and store `input` for `owner` (a normalised bare JID); returns the stored
/// description and its authorize URI.
pub fn register(
    store: &Store,
    public_url: &str,
    owner: &str,
    input: &DescriptionInput,
) -> Result<(ConsentDescription, String), DescriptionError> {
    let new = input.validate(owner)?;
    let stored = store.save_description(&new, new_description_id, now_seconds())?;
    let uri = authorize_uri(public_url, &stored.id);
    Ok((stored, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, logo: Option<&str>, description: &str) -> DescriptionInput {
        DescriptionInput {
            name: name.into(),
            logo_url: logo.map(str::to_owned),
            description: description.into(),
        }
    }

    #[test]
    fn checks_each_field_and_names_it() {
        let owner = "app@example.org";
        assert!(
            input(
                "Elec Expert",
                Some("https://example.fr/logo.png"),
                "<p>x</p>"
            )
            .validate(owner)
            .is_ok()
        );
        for (bad, field) in [
            (input("  ", None, "x"), "'name'"),
            (input(&"n".repeat(101), None, "x"), "'name'"),
            (input("a\nb", None, "x"), "'name'"),
            (
                input("A", Some("http://example.fr/logo.png"), "x"),
                "'logo_url'",
            ),
            (input("A", Some("javascript:alert(1)"), "x"), "'logo_url'"),
            (input("A", Some("logo.png"), "x"), "'logo_url'"),
            (input("A", None, &"x".repeat(20_001)), "'description'"),
        ] {
            let err = bad.validate(owner).unwrap_err().to_string();
            assert!(err.starts_with(&format!("field {field}")), "{err}");
        }
        let blank_logo = input("A", Some(" "), "x").validate(owner).unwrap();
        assert_eq!(blank_logo.logo_url, None);
    }

    #[test]
    fn ids_are_long_random_and_url_safe() {
        let a = new_description_id();
        let b = new_description_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            authorize_uri("https://agent.example.org/dataconnect", "ab-_c"),
            "https://agent.example.org/dataconnect/authorize?id=ab-_c"
        );
    }
}
