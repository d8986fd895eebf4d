//! The rules of `logging`'s "Secrets are never logged" section, checked against
//! the real types: what `Debug` of a `Secret` and of a reqwest request prints.

use quoalise_agent::config::Secret;
use reqwest::header::{AUTHORIZATION, HeaderValue};

const TOKEN: &str = "tok-9f8e7d6c5b4a";

#[test]
fn secret_prints_stars_in_debug_and_display() {
    let s = Secret::new(TOKEN);
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
    assert_eq!(s.expose(), TOKEN);
}

#[test]
fn bearer_auth_keeps_the_token_out_of_request_debug() {
    let client = reqwest::Client::new();
    let secret = Secret::new(TOKEN);
    let req = client
        .get("https://gw.example.org/metering_data_dc/v5/daily_consumption?usage_point_id=22516914714270")
        .bearer_auth(secret.expose())
        .build()
        .unwrap();
    let debug = format!("{req:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("\"authorization\": Sensitive"), "{debug}");
    // The header still carries the token on the wire.
    assert_eq!(
        req.headers()[AUTHORIZATION],
        format!("Bearer {TOKEN}").as_str()
    );

    let builder = client
        .post("https://gw.example.org/oauth2/v3/token")
        .basic_auth("client-id", Some(secret.expose()));
    let debug = format!("{builder:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
}

#[test]
fn a_plain_authorization_header_leaks_unless_marked_sensitive() {
    // Why the rule forbids `.header(AUTHORIZATION, …)` with a plain value.
    let client = reqwest::Client::new();
    let leaky = client
        .get("https://gw.example.org/")
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .build()
        .unwrap();
    assert!(format!("{leaky:?}").contains(TOKEN));

    let mut value = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    value.set_sensitive(true);
    let safe = client
        .get("https://gw.example.org/")
        .header(AUTHORIZATION, value)
        .build()
        .unwrap();
    let debug = format!("{safe:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!format!("{:?}", safe.headers()).contains(TOKEN));
}
