//! The values of particular keys: how each is checked (URLs, redirect URIs,
//! `host:port`, PEM files, `HH:MM` times, JIDs, PRMs...) and read from the tree, a bad
//! one recorded as a problem on its key.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use xmpp_parsers::jid::{FullJid, Jid};

use super::jid::{bare_string, strip_root_dot};
use super::reader::{Reader, array, boolean, integer, non_empty_string, path, string};
use super::tree::Value;
use super::{ApiGeneration, LogFormat, MIN_MAX_STANZA_BYTES};
use crate::quoalise::{Prm, Scope, Scopes};

fn check_pem_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let marker = b"-----BEGIN CERTIFICATE-----";
    if !bytes.windows(marker.len()).any(|w| w == marker) {
        return Err(format!(
            "{shown} holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" line)"
        ));
    }
    Ok(())
}

fn check_http_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("expected an absolute http(s) URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("expected an http(s) URL with a host".to_owned()),
        other => Err(format!("expected an http(s) URL, the scheme is {other:?}")),
    }
}

/// Where a consent flow may send a consumer back: https, or http on loopback for tests.
fn check_redirect_uri(s: &str) -> Result<url::Url, String> {
    let url = check_http_url(s)?;
    if url.scheme() == "http" {
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
            None => false,
        };
        if !loopback {
            return Err(
                "expected an https URL (http only for localhost, 127.0.0.1 or [::1])".to_owned(),
            );
        }
    }
    if url.fragment().is_some() {
        return Err("a redirect URI has no #fragment (RFC 6749)".to_owned());
    }
    Ok(url)
}

/// `host:port`, host a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_host_port(s: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected host:port, e.g. xmpp.example.org:5222 or 127.0.0.1:5222";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{EXPECTED}; the port is missing"));
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "{EXPECTED}; the port is not a number from 1 to 65535"
            ));
        }
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        if !ok {
            return Err(format!(
                "{EXPECTED}; {host:?} is not a valid [IPv6] address"
            ));
        }
        return Ok(());
    }
    let valid_name = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid_name {
        return Err(format!(
            "{EXPECTED}; {host:?} is not a host name (ASCII, punycode for IDN) or an IP address \
             (IPv6 in brackets)"
        ));
    }
    Ok(())
}

fn is_loopback_host_port(s: &str) -> bool {
    let Some((host, _)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Strict `HH:MM`, 00:00 to 23:59.
fn parse_hh_mm(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    jiff::civil::Time::new(h, m, 0, 0).ok()
}

// The readers of the values of particular keys, for the `read` of a field: each
// records a problem and returns `None` on a bad value.

/// The agent's full JID (user@domain/resource), stored normalised.
pub(super) fn full_jid(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let jid = match FullJid::new(&strip_root_dot(&s)) {
        Ok(jid) if jid.node().is_none() => Err(format!(
            "expected a full JID user@domain/resource, e.g. agent@example.org/agent; {s:?} \
             has no user part"
        )),
        Ok(jid) => Ok(jid.to_string()),
        Err(e) => Err(format!(
            "expected a full JID with a resource, e.g. agent@example.org/agent; {s:?}: {e}"
        )),
    };
    r.accept(key, jid)
}

pub(super) fn host_port(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let checked = check_host_port(&s).map_err(|e| format!("{e}, got {s:?}"));
    r.accept(key, checked.map(|()| s))
}

/// A PEM certificate file; a relative path is taken from the configuration file's directory.
/// A PEM certificate file that systemd may hand over as a credential: a relative
/// name is looked up in `$CREDENTIALS_DIRECTORY` when it is set, as secrets are,
/// otherwise next to the configuration file.
pub(super) fn credential_pem_file(r: &mut Reader, key: &str, value: Value) -> Option<PathBuf> {
    let name = super::reader::non_empty_string(r, key, value)?;
    let path = r.secret_path(&name);
    let checked = check_pem_file(&path);
    r.accept(key, checked.map(|()| path))
}

pub(super) fn pem_file(r: &mut Reader, key: &str, value: Value) -> Option<PathBuf> {
    let path = path(r, key, value)?;
    let checked = check_pem_file(&path);
    r.accept(key, checked.map(|()| path))
}

/// `xmpp.allow_plaintext`: true only with `server` (xmpp.server) on loopback.
pub(super) fn plaintext_with(
    server: Option<&str>,
) -> impl FnOnce(&mut Reader, &str, Value) -> Option<bool> {
    move |r, key, value| {
        let allow = boolean(r, key, value)?;
        if allow && !server.is_some_and(is_loopback_host_port) {
            r.problem_keys(
                key,
                &[key, "xmpp.server"],
                "true is only allowed with xmpp.server on loopback (127.0.0.1, [::1] or \
                 localhost): elsewhere the password would cross the network in clear",
            );
        }
        Some(allow)
    }
}

pub(super) fn stanza_bytes(r: &mut Reader, key: &str, value: Value) -> Option<usize> {
    // The maximum is above what any server accepts by default; a bound keeps the
    // arithmetic on sizes far from overflow.
    let n = integer(r, key, value, MIN_MAX_STANZA_BYTES as u64, 64 * 1024 * 1024)?;
    usize::try_from(n).ok()
}

const ACCEPTED_APIS: &str = "\"2026\", \"v5\", \"v4\" or \"v3\"";

pub(super) fn api(r: &mut Reader, key: &str, value: Value) -> Option<ApiGeneration> {
    let api = match value {
        Value::String(s) => ApiGeneration::parse(&s)
            .ok_or_else(|| format!("unknown API generation {s:?}; accepted: {ACCEPTED_APIS}")),
        // `api = 2026` without quotes means the same.
        Value::Integer(2026) => Ok(ApiGeneration::Api2026),
        other => Err(format!(
            "expected one of {ACCEPTED_APIS}, got {}",
            other.describe()
        )),
    };
    r.accept(key, api)
}

/// An http(s) base URL, returned without trailing slashes.
pub(super) fn http_base(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let url = match check_http_url(&s) {
        Ok(url) if url.query().is_some() || url.fragment().is_some() => Err(format!(
            "expected a base URL without query or fragment, got {s:?}"
        )),
        Ok(_) => Ok(s.trim_end_matches('/').to_owned()),
        Err(e) => Err(format!("{e}, got {s:?}")),
    };
    r.accept(key, url)
}

/// `enedis.redirect_uri`: the URI registered at Enedis, http(s) without fragment.
pub(super) fn registered_redirect_uri(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let checked = match check_http_url(&s) {
        Ok(url) if url.fragment().is_some() => Err(format!(
            "a redirect URI has no #fragment (RFC 6749), got {s:?}"
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{e}, got {s:?}")),
    };
    r.accept(key, checked.map(|()| s))
}

pub(super) fn socket_addr(r: &mut Reader, key: &str, value: Value) -> Option<SocketAddr> {
    let s = non_empty_string(r, key, value)?;
    let addr = s.parse::<SocketAddr>().map_err(|_| {
        format!("expected an IP address and port, e.g. 127.0.0.1:8080 or [::1]:8080, got {s:?}")
    });
    r.accept(key, addr)
}

pub(super) fn log_format(r: &mut Reader, key: &str, value: Value) -> Option<LogFormat> {
    let s = string(r, key, value)?;
    let format = match s.as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("expected \"text\" or \"json\", got {s:?}")),
    };
    r.accept(key, format)
}

/// A `tracing` filter directive.
pub(super) fn log_level(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let checked = tracing_subscriber::EnvFilter::builder()
        .parse(&s)
        .map_err(|e| {
            format!(
                "expected a tracing filter such as \"info\" or \"info,quoalise_agent=debug\", \
                 got {s:?}: {e}"
            )
        });
    r.accept(key, checked.map(|_| s))
}

/// A Paris local time, `HH:MM`.
pub(super) fn publish_time(r: &mut Reader, key: &str, value: Value) -> Option<jiff::civil::Time> {
    let s = string(r, key, value)?;
    let time = parse_hh_mm(&s)
        .ok_or_else(|| format!("expected a time \"HH:MM\" (Paris), e.g. \"08:00\", got {s:?}"));
    r.accept(key, time)
}

/// A peer's bare JID, normalised; refused when an earlier `[[peers]]` entry has it.
pub(super) fn peer_jid(r: &mut Reader, key: &str, value: Value) -> Option<String> {
    let s = non_empty_string(r, key, value)?;
    let jid = match Jid::new(&s) {
        Ok(jid) if jid.resource().is_some() => Err(format!(
            "expected a bare JID without /resource (peers are allowed whatever resource they \
             connect from), e.g. {:?}, got {s:?}",
            bare_string(&jid)
        )),
        Ok(jid) => Ok(bare_string(&jid)),
        Err(e) => Err(format!(
            "expected a bare JID, e.g. app@example.org; {s:?}: {e}"
        )),
    };
    let jid = r.accept(key, jid)?;
    let once = match r.peer_jids.get(&jid) {
        Some(first) => Err(format!(
            "{jid} is already listed as peers[{first}].jid (JIDs are compared with localpart \
             and domain case-folded); list each peer once"
        )),
        None => Ok(jid),
    };
    let jid = r.accept(key, once)?;
    r.peer_jids.insert(jid.clone(), r.peer_index);
    Some(jid)
}

/// A peer's PRMs, each once.
pub(super) fn prms(r: &mut Reader, key: &str, value: Value) -> Option<Vec<Prm>> {
    let mut seen = HashSet::new();
    let items = array(r, key, value, "an array of 14-digit PRMs");
    Some(strings(r, key, items, |s| match s.parse::<Prm>() {
        Ok(prm) if !seen.insert(prm) => Err(format!("PRM {prm} is listed twice")),
        Ok(prm) => Ok(prm),
        Err(e) => Err(format!("{e}, got {s:?}")),
    }))
}

/// A peer's data scopes, each once, by their names ([`Scope::names`]).
pub(super) fn scope_names(r: &mut Reader, key: &str, value: Value) -> Option<Scopes> {
    let mut seen = Scopes::NONE;
    let items = array(r, key, value, "an array of scope names");
    let accepted = strings(r, key, items, |s| match Scope::parse(s) {
        Some(scope) if seen.contains(scope) => Err(format!("scope {scope} is listed twice")),
        Some(scope) => {
            seen.insert(scope);
            Ok(scope)
        }
        None => Err(format!(
            "unknown scope {s:?}; the scopes are: {}",
            Scope::names()
        )),
    });
    Some(accepted.into_iter().collect())
}

/// Where a peer's consumers may be sent back: https (http only on loopback).
pub(super) fn redirect_uris(r: &mut Reader, key: &str, value: Value) -> Option<Vec<url::Url>> {
    let items = array(r, key, value, "an array of https URLs");
    Some(strings(r, key, items, |s| {
        check_redirect_uri(s).map_err(|e| format!("{e}, got {s:?}"))
    }))
}

/// The strings of an array accepted by `check`; each problem names its item
/// (`key[index]`).
fn strings<T>(
    r: &mut Reader,
    key: &str,
    items: Vec<Value>,
    mut check: impl FnMut(&str) -> Result<T, String>,
) -> Vec<T> {
    let mut accepted = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("{key}[{i}]");
        if let Some(value) = string(r, &key, item).and_then(|s| r.accept(&key, check(&s))) {
            accepted.push(value);
        }
    }
    accepted
}

/// Checks `store.url` as the PostgreSQL driver will read it. The message never
/// quotes the URL (it may hold a password).
pub(super) fn postgres_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "expected a PostgreSQL URL: postgres://user@host:port/database (leave store.url out \
             to use the SQLite file of store.path)"
                .into(),
        );
    }
    let config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        // The driver's Display is a summary ("invalid connection string"); its
        // cause names the option (never its value: not the password).
        match std::error::Error::source(&e) {
            Some(cause) => format!("not a usable PostgreSQL URL: {e}: {cause}"),
            None => format!("not a usable PostgreSQL URL: {e}"),
        }
    })?;
    if config.get_dbname().is_none() {
        return Err("names no database: postgres://user@host:port/DATABASE".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_time_checks() {
        for ok in [
            "xmpp.example.org:5222",
            "127.0.0.1:5222",
            "[::1]:5222",
            "localhost:1",
        ] {
            assert!(check_host_port(ok).is_ok(), "{ok}");
        }
        for bad in [
            "example.org",
            "example.org:0",
            "example.org:x",
            ":5222",
            "[::1:5222",
            "a b:1",
            "::1:5222",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
        assert!(is_loopback_host_port("[::1]:5222"));
        assert!(is_loopback_host_port("127.0.0.2:5222"));
        assert!(is_loopback_host_port("LOCALHOST:5222"));
        assert!(!is_loopback_host_port("10.0.0.1:5222"));
        assert_eq!(
            parse_hh_mm("23:59"),
            Some(jiff::civil::Time::constant(23, 59, 0, 0))
        );
        for bad in ["24:00", "8:00", "08:60", "08:00:00", "0800", "+8:00"] {
            assert_eq!(parse_hh_mm(bad), None, "{bad}");
        }
    }
}
