//! Who may read which PRM, and which of its series.
//!
//! A peer (already on the allow-list: the XMPP router refused everyone else) may
//! read a PRM when its `[[peers]] usage_points` list it, or when it owns a consent
//! in the store that covers the PRM, is active, valid now, and was given through
//! the configured API generation or declared to Enedis SGE. Anything else is `not-authorized`, with a text
//! that says why in terms of the requester's OWN situation (no consent, consent
//! expired or revoked, not granted): whether another peer holds a consent for the
//! PRM is never looked at, so it can never leak.
//!
//! Then, whatever the basis (a grant or a consent), the series must be in the
//! peer's scopes (`[[peers]] scopes`, [`crate::quoalise::Scope`]): a series outside
//! them is `not-authorized` with `<missing-scope/>` naming the scope
//! ([`in_scope`]). The scopes come from the settings snapshot of the request, so a
//! reload narrowing them applies to the very next request, page or push.

use xmpp_parsers::jid::BareJid;

use super::context::{AgentContext, Settings};
use crate::quoalise::{Identifier, Prm, Scope, Scopes, Series};
use crate::store::consents::fmt_instant;
use crate::store::{Consent, ConsentState, now_seconds};
use crate::xmpp::CommandError;

/// Why a peer may read a PRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// The PRM is in the peer's `usage_points`.
    Configured,
    /// The peer owns this consent (the newest usable one).
    Consent {
        id: i64,
        /// End of validity, UTC seconds (excluded).
        valid_until: i64,
        /// Where it was given: Data Connect, or declared to SGE.
        platform: Platform,
    },
}

/// Which Enedis platform serves a PRM: Data Connect, or SGE for a PRM with a
/// declared consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    DataConnect,
    Sge,
}

impl Platform {
    /// Its name in messages to peers.
    pub fn name(self) -> &'static str {
        match self {
            Platform::DataConnect => "Enedis Data Connect",
            Platform::Sge => "Enedis SGE",
        }
    }

    /// The `issuer` of its refusals in `<upstream-error/>`.
    pub fn issuer(self) -> &'static str {
        match self {
            Platform::DataConnect => crate::xmpp::ISSUER_ENEDIS,
            Platform::Sge => crate::xmpp::ISSUER_ENEDIS_SGE,
        }
    }
}

/// The platform that serves `prm` to a peer holding `grant`: the one its consent
/// was given through; for a grant of the configuration, SGE when an active
/// declared consent (of any peer) covers the PRM, Data Connect otherwise.
pub async fn platform_for(
    ctx: &AgentContext,
    grant: &Grant,
    prm: Prm,
) -> Result<Platform, CommandError> {
    match grant {
        Grant::Consent { platform, .. } => Ok(*platform),
        Grant::Configured => {
            let now = now_seconds();
            let upstream = ctx
                .store
                .call_now(move |s| s.upstream_for_prm(&prm, now))
                .await
                .map_err(|e| store_failure(&e))?;
            Ok(match upstream {
                crate::store::PrmUpstream::Sge { .. } => Platform::Sge,
                crate::store::PrmUpstream::DataConnect => Platform::DataConnect,
            })
        }
    }
}

/// Checks that `requester` may read `identifier` now: its PRM (a grant or a
/// consent of its own), then its series ([`in_scope`]).
pub async fn authorise(
    ctx: &AgentContext,
    settings: &Settings,
    requester: &BareJid,
    identifier: Identifier,
) -> Result<Grant, CommandError> {
    let grant = authorise_prm(ctx, settings, requester, identifier.prm).await?;
    in_scope(settings, requester, identifier.series)?;
    Ok(grant)
}

/// Refuses `series` unless the requester's scopes include its scope: the one
/// check of scopes on the data path, for grants and consents alike.
pub fn in_scope(
    settings: &Settings,
    requester: &BareJid,
    series: Series,
) -> Result<(), CommandError> {
    let scope = Scope::of(series);
    let scopes = settings.scopes(requester);
    if scopes.contains(scope) {
        return Ok(());
    }
    Err(out_of_scope(
        requester,
        scopes,
        scope,
        &format!("{series} is {scope} data"),
    ))
}

/// The refusal of data of `scope` to `requester`, whose scopes are `scopes`;
/// `what` says what was asked ("consumption/power/active/raw is load_curve data").
pub fn out_of_scope(requester: &BareJid, scopes: Scopes, scope: Scope, what: &str) -> CommandError {
    let theirs = scopes_in_words(scopes);
    CommandError::out_of_scope(
        scope,
        format!(
            "{what}: this peer's scopes do not include {scope} ({theirs}); the agent's operator can add it to the scopes of {requester} in [[peers]]"
        ),
    )
}

/// A peer's scopes, for a refusal: "they are: daily, max_power", "it has none".
pub fn scopes_in_words(scopes: Scopes) -> String {
    if scopes.is_empty() {
        "it has none".to_owned()
    } else {
        format!("they are: {scopes}")
    }
}

/// Checks that `requester` may read `prm` now, whatever the series (the caller
/// checks the scope of what it serves).
pub async fn authorise_prm(
    ctx: &AgentContext,
    settings: &Settings,
    requester: &BareJid,
    prm: Prm,
) -> Result<Grant, CommandError> {
    if settings.grants(requester, &prm) {
        return Ok(Grant::Configured);
    }
    let owner = requester.to_string();
    let generation = settings.generation();
    let now = now_seconds();
    let usable = {
        let owner = owner.clone();
        ctx.store
            .call_now(move |s| s.consents_for_peer(&owner, &prm, now))
            .await
    }
    .map_err(|e| store_failure(&e))?;
    if let Some(consent) = usable.iter().find(|c| c.generation == generation) {
        return Ok(Grant::Consent {
            id: consent.id,
            valid_until: consent.valid_until,
            platform: Platform::DataConnect,
        });
    }
    let declared = {
        let owner = owner.clone();
        ctx.store
            .call_now(move |s| s.sge_consents_for_peer(&owner, &prm, now))
            .await
    }
    .map_err(|e| store_failure(&e))?;
    if let Some(consent) = declared.first() {
        return Ok(Grant::Consent {
            id: consent.id,
            valid_until: consent.valid_until,
            platform: Platform::Sge,
        });
    }
    // Refused: find out why, among the requester's own consents only.
    let own = ctx
        .store
        .call(move |s| {
            let mut own = s.consents_of_owner(&owner)?;
            own.extend(s.sge_consents_of_owner(&owner)?);
            Ok(own
                .into_iter()
                .filter(|c| c.covers(&prm))
                .collect::<Vec<_>>())
        })
        .await
        .map_err(|e| store_failure(&e))?;
    Err(CommandError::not_authorized(refusal(
        requester, prm, &own, settings, now,
    )))
}

fn store_failure(e: &crate::store::StoreError) -> CommandError {
    tracing::error!(error = %e, "the consent store failed during authorisation");
    CommandError::internal(
        "the agent cannot read its consent store; its operator can find details in its log",
    )
}

/// The text of a refusal, from the requester's own consents covering `prm`.
fn refusal(
    requester: &BareJid,
    prm: Prm,
    own: &[Consent],
    settings: &Settings,
    now: i64,
) -> String {
    let generation = settings.generation();
    // The most telling consent: the latest to end among those declared to SGE
    // or given through this generation, else among all.
    let latest = |generation: Option<crate::config::ApiGeneration>| {
        own.iter()
            .filter(move |c| c.is_sge() || generation.is_none_or(|g| c.generation == g))
            .max_by_key(|c| c.valid_until)
    };
    let Some(consent) = latest(Some(generation)) else {
        let how = "a consumer gives one through get_authorize_uri";
        if let Some(other) = latest(None) {
            return format!(
                "no consent for PRM {prm}: {requester} holds consent {} given through Enedis API {}, but this agent now uses API {}; the consumer must consent again ({how})",
                other.id,
                other.generation.as_str(),
                generation.as_str()
            );
        }
        return format!(
            "PRM {prm} is not granted to {requester}: it is not among its usage points and {requester} holds no consent for it ({how})"
        );
    };
    let how = if consent.is_sge() {
        "the agent's operator declares one with quoalise-agent consents add --upstream sge"
    } else {
        "a consumer gives one through get_authorize_uri"
    };
    match consent.state {
        ConsentState::Revoked => format!(
            "no consent for PRM {prm}: consent {} of {requester} was revoked ({how} again)",
            consent.id
        ),
        ConsentState::Expired => format!(
            "no consent for PRM {prm}: consent {} of {requester} expired on {} ({how} again)",
            consent.id,
            fmt_instant(consent.valid_until)
        ),
        ConsentState::Active if consent.valid_until <= now => format!(
            "no consent for PRM {prm}: consent {} of {requester} expired on {} ({how} again)",
            consent.id,
            fmt_instant(consent.valid_until)
        ),
        ConsentState::Active if consent.valid_from > now => format!(
            "no consent for PRM {prm} yet: consent {} of {requester} is valid from {}",
            consent.id,
            fmt_instant(consent.valid_from)
        ),
        // Usable consents were found by the first query: this only happens when
        // the consent changed in between.
        ConsentState::Active => {
            format!("PRM {prm} is not granted to {requester} right now; try again")
        }
    }
}

/// One PRM a peer may read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    pub prm: Prm,
    /// Listed in the peer's `usage_points`.
    pub configured: bool,
    /// The peer's usable consents covering it: of the configured generation, or
    /// declared to SGE.
    pub consents: Vec<Consent>,
    /// The platform the peer's requests for it go to ([`platform_for`]).
    pub platform: Platform,
}

impl Readable {
    /// End of access, UTC seconds: `None` when the configuration grants it.
    pub fn valid_until(&self) -> Option<i64> {
        if self.configured {
            return None;
        }
        self.consents.iter().map(|c| c.valid_until).max()
    }
}

/// Every PRM `requester` may read now, in PRM order.
pub async fn readable(
    ctx: &AgentContext,
    settings: &Settings,
    requester: &BareJid,
) -> Result<Vec<Readable>, CommandError> {
    let owner = requester.to_string();
    let generation = settings.generation();
    let now = now_seconds();
    let consents = ctx
        .store
        .call_now(move |s| {
            let mut own: Vec<Consent> = s
                .consents_of_owner(&owner)?
                .into_iter()
                .filter(|c| c.generation == generation)
                .collect();
            own.extend(s.sge_consents_of_owner(&owner)?);
            own.retain(|c| c.is_usable_at(now));
            Ok(own)
        })
        .await
        .map_err(|e| store_failure(&e))?;
    let mut by_prm: std::collections::BTreeMap<Prm, Readable> = Default::default();
    if let Some(configured) = settings.usage_points(requester) {
        for prm in configured {
            by_prm.insert(
                *prm,
                Readable {
                    prm: *prm,
                    configured: true,
                    consents: Vec::new(),
                    platform: Platform::DataConnect,
                },
            );
        }
    }
    for consent in consents {
        for prm in &consent.prms {
            by_prm
                .entry(*prm)
                .or_insert_with(|| Readable {
                    prm: *prm,
                    configured: false,
                    consents: Vec::new(),
                    platform: Platform::DataConnect,
                })
                .consents
                .push(consent.clone());
        }
    }
    // The platform each PRM is read through, as a request would find it: the
    // grant a request would use first (the configuration, then a Data Connect
    // consent, then a declared one).
    // One read of the PRMs declared to SGE, whatever the number of usage points
    // (the same rule as `platform_for`'s for a grant).
    let declared = if by_prm.values().any(|r| r.configured) {
        ctx.store
            .call_now(move |s| s.sge_prms_at(now))
            .await
            .map_err(|e| store_failure(&e))?
    } else {
        Default::default()
    };
    let mut readable: Vec<Readable> = by_prm.into_values().collect();
    for r in &mut readable {
        r.platform = if r.configured {
            if declared.contains(&r.prm) {
                Platform::Sge
            } else {
                Platform::DataConnect
            }
        } else if r.consents.iter().any(|c| !c.is_sge()) {
            Platform::DataConnect
        } else {
            Platform::Sge
        };
    }
    Ok(readable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiGeneration;

    fn settings(api: ApiGeneration) -> Settings {
        Settings::new(crate::config::for_tests(
            "",
            &[("QUOALISE_AGENT__ENEDIS__API", api.as_str())],
        ))
    }

    fn consent(
        id: i64,
        generation: ApiGeneration,
        state: ConsentState,
        from: i64,
        until: i64,
    ) -> Consent {
        Consent {
            id,
            generation,
            owner: "app@example.org".into(),
            prms: vec!["11453290002823".parse().unwrap()],
            autorisation_id: None,
            valid_from: from,
            valid_until: until,
            state,
            created_at: from,
            updated_at: from,
            has_refresh_token: false,
            sge: None,
        }
    }

    #[test]
    fn configured_usage_points_are_granted() {
        let s = settings(ApiGeneration::Api2026);
        let app: BareJid = "app@example.org".parse().unwrap();
        let other: BareJid = "other@example.org".parse().unwrap();
        let prm: Prm = "22516914714270".parse().unwrap();
        assert!(s.grants(&app, &prm));
        assert!(!s.grants(&other, &prm));
        assert!(!s.grants(&app, &"11453290002823".parse().unwrap()));
    }

    #[test]
    fn series_outside_the_scopes_are_refused_naming_the_scope() {
        let s = Settings::new(crate::config::for_tests(
            "[[peers]]\njid = \"daily@example.org\"\nscopes = [\"daily\"]\n\
             [[peers]]\njid = \"none@example.org\"\nscopes = []\n",
            &[],
        ));
        let app: BareJid = "app@example.org".parse().unwrap();
        let daily: BareJid = "daily@example.org".parse().unwrap();
        let none: BareJid = "none@example.org".parse().unwrap();
        let stranger: BareJid = "stranger@example.org".parse().unwrap();
        // The default: every series.
        for series in Series::ALL {
            assert_eq!(in_scope(&s, &app, series), Ok(()), "{series}");
        }
        assert_eq!(in_scope(&s, &daily, Series::ProductionEnergyDaily), Ok(()));
        let refused = in_scope(&s, &daily, Series::ConsumptionPower).unwrap_err();
        assert_eq!(
            refused,
            CommandError::out_of_scope(
                Scope::LoadCurve,
                "consumption/power/active/raw is load_curve data: this peer's scopes do not \
                 include load_curve (they are: daily); the agent's operator can add it to the \
                 scopes of daily@example.org in [[peers]]"
            )
        );
        let refused = in_scope(&s, &none, Series::ConsumptionMaxPower).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("do not include max_power (it has none)"),
            "{refused}"
        );
        assert!(in_scope(&s, &stranger, Series::ConsumptionEnergyDaily).is_err());
    }

    #[test]
    fn refusals_say_why_from_the_requesters_own_consents() {
        let s = settings(ApiGeneration::Api2026);
        let app: BareJid = "app@example.org".parse().unwrap();
        let prm: Prm = "11453290002823".parse().unwrap();
        let now = 1_800_000_000;
        let text = refusal(&app, prm, &[], &s, now);
        assert!(text.contains("is not granted to app@example.org"), "{text}");
        assert!(text.contains("holds no consent"), "{text}");

        let expired = consent(
            7,
            ApiGeneration::Api2026,
            ConsentState::Expired,
            now - 100,
            now - 10,
        );
        let text = refusal(&app, prm, &[expired], &s, now);
        assert!(
            text.contains("consent 7 of app@example.org expired on"),
            "{text}"
        );

        let lapsed = consent(
            8,
            ApiGeneration::Api2026,
            ConsentState::Active,
            now - 100,
            now - 10,
        );
        assert!(refusal(&app, prm, &[lapsed], &s, now).contains("expired on"));

        let revoked = consent(
            9,
            ApiGeneration::Api2026,
            ConsentState::Revoked,
            now - 100,
            now + 100,
        );
        assert!(refusal(&app, prm, &[revoked], &s, now).contains("was revoked"));

        let old = consent(
            3,
            ApiGeneration::V5,
            ConsentState::Active,
            now - 100,
            now + 100,
        );
        let text = refusal(&app, prm, &[old], &s, now);
        assert!(text.contains("given through Enedis API v5"), "{text}");
        assert!(text.contains("now uses API 2026"), "{text}");
    }
}
