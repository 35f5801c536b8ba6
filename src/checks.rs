//! The names of the checks a proxied request passes, and a route's mode for each
//! (`[routes.checks]`: `enforce`, or `report` to count and log a failure but forward anyway).
//! It decides nothing itself: the service asks it what to do with a check's refusal.

use serde::{Deserialize, Serialize};

/// One of the checks of a bearer route, as metrics and logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Check {
    /// The credential's trusted IPs (`trusted_ips` of the client or token).
    Ip,
    /// The bearer token or API key itself.
    Bearer,
    /// The route's `scopes` and `audience`.
    Scope,
    /// The RFC 9421 signature (and `X-Client-Id`).
    Signature,
    /// The RFC 9530 `Content-Digest` of the body.
    Digest,
    /// The idempotency key.
    Idempotency,
}

impl Check {
    /// Every check, in the order a request meets them.
    pub const ALL: [Check; 6] = [
        Check::Ip,
        Check::Bearer,
        Check::Scope,
        Check::Signature,
        Check::Digest,
        Check::Idempotency,
    ];

    /// The `check` label and the key in `[routes.checks]`.
    pub fn name(self) -> &'static str {
        match self {
            Check::Ip => "ip",
            Check::Bearer => "bearer",
            Check::Scope => "scope",
            Check::Signature => "signature",
            Check::Digest => "digest",
            Check::Idempotency => "idempotency",
        }
    }

    /// The position in [`Check::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a route does when a check fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckMode {
    /// The request is refused. The default.
    #[default]
    Enforce,
    /// Shadow mode: the failure is logged and counted (`result="would_deny"`) and the request
    /// is forwarded, without any identity the failed check would have vouched for.
    Report,
}

/// `[routes.checks]`: the mode of each check on one route; every key defaults to `enforce`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checks {
    /// `ip`, default `enforce`: the credential's trusted IPs.
    pub ip: CheckMode,
    /// `bearer`, default `enforce`: a request whose credential fails goes on anonymous.
    pub bearer: CheckMode,
    /// `scope`, default `enforce`: the route's scopes and audience.
    pub scope: CheckMode,
    /// `signature`, default `enforce`: the RFC 9421 signature and `X-Client-Id`.
    pub signature: CheckMode,
    /// `digest`, default `enforce`: the body's `Content-Digest`.
    pub digest: CheckMode,
    /// `idempotency`, default `enforce`: a refused key forwards the request without one.
    pub idempotency: CheckMode,
}

impl Checks {
    /// The mode of `check`.
    pub fn mode(&self, check: Check) -> CheckMode {
        match check {
            Check::Ip => self.ip,
            Check::Bearer => self.bearer,
            Check::Scope => self.scope,
            Check::Signature => self.signature,
            Check::Digest => self.digest,
            Check::Idempotency => self.idempotency,
        }
    }

    /// Whether `check` only reports.
    pub fn reports(&self, check: Check) -> bool {
        self.mode(check) == CheckMode::Report
    }

    /// Whether every check `other` enforces, these enforce too.
    pub fn at_least_as_strict_as(&self, other: &Checks) -> bool {
        Check::ALL
            .iter()
            .all(|&c| other.reports(c) || !self.reports(c))
    }

    /// Whether any check reports (a warning at start names the route).
    pub fn any_report(&self) -> bool {
        Check::ALL.iter().any(|&c| self.reports(c))
    }
}

/// The problem codes of the checks that failed in report mode, carried in the request's
/// extensions to the forwarder, which sends them as `X-Warden-Would-Deny` (after removing any
/// `X-Warden-*` a client sent, so the upstream can believe it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WouldDeny(pub Vec<&'static str>);

impl WouldDeny {
    /// The header value: the codes, comma-separated, in the order the checks ran.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        http::HeaderValue::from_str(&self.0.join(", ")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_enforces_unless_told_to_report() {
        let checks = Checks::default();
        assert!(Check::ALL.iter().all(|&c| !checks.reports(c)));
        let shadow = Checks {
            signature: CheckMode::Report,
            ..Checks::default()
        };
        assert!(shadow.reports(Check::Signature) && !shadow.reports(Check::Bearer));
        assert!(checks.at_least_as_strict_as(&shadow));
        assert!(!shadow.at_least_as_strict_as(&checks));
        assert_eq!(Check::Idempotency.index(), 5);
        assert_eq!(Check::ALL[Check::Digest.index()], Check::Digest);
    }

    #[test]
    fn modes_are_read_from_toml_and_unknown_checks_are_refused() {
        let checks: Checks = parse("bearer = \"report\"\nip = \"enforce\"").unwrap();
        assert!(checks.reports(Check::Bearer) && !checks.reports(Check::Ip));
        assert!(parse("signatures = \"report\"").is_err());
        assert!(parse("bearer = \"maybe\"").is_err());
    }

    fn parse(text: &str) -> Result<Checks, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())
    }
}
