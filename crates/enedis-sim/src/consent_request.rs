//! A consent request once checked, and which consent page it is for: what
//! `oauth` builds from the query of `/dataconnect/v{1,2}/oauth2/authorize`, and what
//! `page` renders. Its own module so that the page and the endpoints both depend on
//! it instead of on each other.

use jiff::civil::Date;
use url::Url;

/// Which consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `/dataconnect/v1/oauth2/authorize`: code grant (v3/v4), or PRMs only (v5).
    V1,
    /// `/dataconnect/v2/oauth2/authorize`: 2026, `autorisation_id`.
    V2,
}

impl Version {
    pub fn path(self) -> &'static str {
        match self {
            Version::V1 => "/dataconnect/v1/oauth2/authorize",
            Version::V2 => "/dataconnect/v2/oauth2/authorize",
        }
    }
}

/// A checked consent request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub version: Version,
    pub client_id: String,
    pub state: Option<String>,
    pub duration: String,
    /// The day the consent would end.
    pub expires: Date,
    /// Where to send the consumer back.
    pub redirect: Url,
    /// The `redirect_uri` parameter as sent (v1 only), kept for the page's form.
    pub redirect_param: Option<String>,
    /// Sandbox profile from the last digit of `state`.
    pub profile: Option<u8>,
}
