//! Checks of single values, free of any key or source: URLs, redirect URIs,
//! `host:port`, PEM files, `HH:MM` times. The reader turns their errors into problems.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

pub(super) fn check_pem_file(path: &Path) -> Result<(), String> {
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

pub(super) fn check_http_url(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("expected an absolute http(s) URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("expected an http(s) URL with a host".to_owned()),
        other => Err(format!("expected an http(s) URL, the scheme is {other:?}")),
    }
}

/// Where a consent flow may send a consumer back: https, or http on loopback for tests.
pub(super) fn check_redirect_uri(s: &str) -> Result<url::Url, String> {
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
pub(super) fn check_host_port(s: &str) -> Result<(), String> {
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

pub(super) fn is_loopback_host_port(s: &str) -> bool {
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
pub(super) fn parse_hh_mm(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    jiff::civil::Time::new(h, m, 0, 0).ok()
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
