//! Where the consent flow may send a consumer back, and how.
//!
//! The first Data Connect proxy pasted the `redirect_uri` it was given into its
//! redirect: anybody could bounce a consumer anywhere. Here a requested URI must
//! fall under one of the peer's configured `redirect_uris`: same scheme, same host,
//! same port, and a path under the configured path on a segment boundary
//! (`/linky` allows `/linky` and `/linky/done`, not `/linkyx`). URIs are compared
//! after parsing (the WHATWG rules browsers use), so `..` segments, percent-encoded
//! dots, letter case of the host and default ports cannot smuggle a URI out.

use url::Url;

/// Why a requested redirect URI is refused (French, shown to the consumer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("ce n'est pas une adresse web absolue")]
    NotAUrl,
    #[error("seules les adresses http et https sont acceptées")]
    Scheme,
    #[error("une adresse de retour ne contient ni identifiant ni mot de passe")]
    Credentials,
    #[error("une adresse de retour ne contient pas de fragment (#…)")]
    Fragment,
    #[error("cette application n'a déclaré aucune adresse de retour")]
    NoneConfigured,
    #[error("elle ne fait pas partie des adresses de retour déclarées par l'application")]
    NotAllowed,
}

/// The requested URI, parsed, if it falls under one of `allowed`.
pub fn check_redirect_uri(requested: &str, allowed: &[Url]) -> Result<Url, RedirectUriError> {
    let url = Url::parse(requested.trim()).map_err(|_| RedirectUriError::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RedirectUriError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RedirectUriError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(RedirectUriError::Fragment);
    }
    if allowed.is_empty() {
        return Err(RedirectUriError::NoneConfigured);
    }
    if allowed.iter().any(|base| is_under(&url, base)) {
        Ok(url)
    } else {
        Err(RedirectUriError::NotAllowed)
    }
}

/// Same scheme, host and port, and `url`'s path under `base`'s on a segment boundary.
fn is_under(url: &Url, base: &Url) -> bool {
    if url.scheme() != base.scheme()
        || url.host() != base.host()
        || url.port_or_known_default() != base.port_or_known_default()
    {
        return false;
    }
    let prefix = base.path();
    let path = url.path();
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `redirect_uri` with `usage_points=<PRM,PRM…>` appended, encoded, after its own
/// query.
pub fn with_usage_points(redirect_uri: &Url, prms: &[String]) -> Url {
    let mut url = redirect_uri.clone();
    url.query_pairs_mut()
        .append_pair("usage_points", &prms.join(","));
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Url> {
        vec![
            Url::parse("https://app.example.org/linky/").unwrap(),
            Url::parse("http://127.0.0.1:8090/cb").unwrap(),
        ]
    }

    #[test]
    fn accepts_uris_under_a_configured_one() {
        for ok in [
            "https://app.example.org/linky/",
            "https://app.example.org/linky/done?x=1&y=%C3%A9",
            "https://APP.example.org:443/linky/a/b",
            "http://127.0.0.1:8090/cb",
            "http://127.0.0.1:8090/cb/next",
            "http://127.0.0.1:8090/cb?then=home",
        ] {
            assert!(check_redirect_uri(ok, &allowed()).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        use RedirectUriError::*;
        for (bad, why) in [
            ("https://evil.example.org/linky/", NotAllowed),
            ("https://app.example.org.evil.com/linky/", NotAllowed),
            ("https://app.example.org:8443/linky/", NotAllowed),
            ("http://app.example.org/linky/", NotAllowed),
            ("https://app.example.org/linkyx", NotAllowed),
            ("https://app.example.org/linky", NotAllowed),
            ("https://app.example.org/other/", NotAllowed),
            ("https://app.example.org/linky/../admin", NotAllowed),
            ("https://app.example.org/linky/%2e%2e/admin", NotAllowed),
            ("http://127.0.0.1:8091/cb", NotAllowed),
            ("http://127.0.0.1:8090/cbx", NotAllowed),
            ("http://localhost:8090/cb", NotAllowed),
            ("https://user:pw@app.example.org/linky/", Credentials),
            ("https://app.example.org/linky/#x", Fragment),
            ("javascript:alert(1)", Scheme),
            ("//app.example.org/linky/", NotAUrl),
            ("/linky/", NotAUrl),
        ] {
            assert_eq!(check_redirect_uri(bad, &allowed()), Err(why), "{bad}");
        }
        assert_eq!(
            check_redirect_uri("https://app.example.org/linky/", &[]),
            Err(NoneConfigured)
        );
    }

    #[test]
    fn appends_usage_points_after_the_existing_query() {
        let url = Url::parse("https://app.example.org/linky/done?lang=fr&x=a%26b").unwrap();
        let out = with_usage_points(&url, &["12345678901234".into(), "10284856584123".into()]);
        assert_eq!(
            out.as_str(),
            "https://app.example.org/linky/done?lang=fr&x=a%26b&usage_points=12345678901234%2C10284856584123"
        );
        let pairs: Vec<(String, String)> = out.query_pairs().into_owned().collect();
        assert_eq!(pairs[2].1, "12345678901234,10284856584123");
    }
}
