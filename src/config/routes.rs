//! `[[routes]]` (and `[router]`): each route's pattern, methods and policy, checked against
//! the sections it depends on (`signatures`, `tokens.realm`).

use http::Method;

use super::{
    ConfigError, RawConfig, RawRoute, SignatureSettings, invalid, parse_public_url,
    validate_components,
};
use crate::policy::IdempotencyMode;
use crate::policy::{AuthMode, Policy, SignatureMode};
use crate::router::{PathPattern, Route};
use crate::scope::valid_audience;

/// `[[routes]]`, validated in order; errors name `routes[i]`. `signatures` gives the mode of
/// routes that set none.
pub(super) fn validate_routes(
    raw: &RawConfig,
    signatures: &SignatureSettings,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        let pattern = PathPattern::parse(&r.path)
            .map_err(|detail| invalid(format!("{key}.path"), detail))?
            .case_insensitive(raw.router.case_insensitive);
        if raw.router.case_insensitive && !pattern.is_ascii() {
            // Case-insensitive upstreams fold non-ASCII letters too, in ways that differ.
            return Err(invalid(
                format!("{key}.path"),
                "non-ASCII text in a pattern needs router.case_insensitive = false",
            ));
        }
        let mut methods = Vec::with_capacity(r.methods.len());
        for m in &r.methods {
            let upper = m.to_ascii_uppercase();
            let method = Method::from_bytes(upper.as_bytes()).map_err(|_| {
                invalid(
                    format!("{key}.methods"),
                    format!("'{m}' is not an HTTP method"),
                )
            })?;
            methods.push(method);
        }
        let signature = r.signature.unwrap_or(signatures.policy);
        if r.auth == AuthMode::None
            && (r.signature.is_some_and(|m| m != SignatureMode::Off)
                || !r.signature_cover.is_empty())
        {
            return Err(invalid(
                format!("{key}.signature"),
                "signatures need a caller identity: set auth = \"bearer\" on this route",
            ));
        }
        // Records are kept per client; a public route has none to keep them under.
        let idempotency = match (r.auth, r.idempotency) {
            (AuthMode::None, Some(IdempotencyMode::Required | IdempotencyMode::Optional)) => {
                return Err(invalid(
                    format!("{key}.idempotency"),
                    "idempotency keys are kept per client: set auth = \"bearer\" on this route",
                ));
            }
            (AuthMode::None, _) => IdempotencyMode::Off,
            (_, mode) => mode.unwrap_or_default(),
        };
        let public_url = r
            .public_url
            .as_deref()
            .map(|u| parse_public_url(&format!("{key}.public_url"), u))
            .transpose()?;
        let cover = validate_components(&format!("{key}.signature_cover"), &r.signature_cover)?;
        let require = validate_requirement(&key, r, &raw.tokens.realm)?;
        if r.auth == AuthMode::None && r.checks.any_report() {
            return Err(invalid(
                format!("{key}.checks"),
                "a public route runs no checks to report on: set auth = \"bearer\"",
            ));
        }
        if r.sign_responses && raw.signatures.response_key_file.trim().is_empty() {
            return Err(invalid(
                format!("{key}.sign_responses"),
                "needs a key: set signatures.response_key_file (warden keygen --out FILE)",
            ));
        }
        routes.push(Route {
            name: r.name.clone().unwrap_or_else(|| r.path.clone()),
            index: i,
            pattern,
            methods,
            policy: Policy {
                auth: r.auth,
                // Public routes have no client whose key could verify a signature.
                signature: if r.auth == AuthMode::None {
                    SignatureMode::Off
                } else {
                    signature
                },
                public_url,
                cover,
                idempotency,
                require,
                sign_responses: r.sign_responses,
                checks: r.checks,
            },
        });
    }
    Ok(routes)
}

/// A route's `scopes` and `audience`, which only a bearer route can check.
fn validate_requirement(
    key: &str,
    r: &RawRoute,
    realm: &str,
) -> Result<crate::scope::Requirement, ConfigError> {
    if r.auth == AuthMode::None && (!r.scopes.is_empty() || r.audience.is_some()) {
        return Err(invalid(
            format!("{key}.scopes"),
            "scopes and audience need a caller identity: set auth = \"bearer\" on this route",
        ));
    }
    for (j, s) in r.scopes.iter().enumerate() {
        crate::scope::check(s)
            .map_err(|e| invalid(format!("{key}.scopes[{j}]"), format!("'{s}': {e}")))?;
    }
    if let Some(a) = &r.audience {
        if !valid_audience(a) {
            return Err(invalid(
                format!("{key}.audience"),
                format!("'{a}' must be 1-256 visible ASCII characters without spaces or quotes"),
            ));
        }
    }
    Ok(crate::scope::Requirement::new(
        realm,
        r.scopes.clone(),
        r.audience.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;
    use crate::config::signatures::validate_signatures;

    fn routes(toml: &str) -> Result<Vec<Route>, ConfigError> {
        let raw = raw(toml);
        let signatures = validate_signatures(&raw.signatures).unwrap();
        validate_routes(&raw, &signatures)
    }

    fn route(fields: &str) -> String {
        format!("[[routes]]\npath = \"/a/**\"\n{fields}\n")
    }

    #[test]
    fn defaults_of_a_bearer_and_a_public_route() {
        let r = routes(&format!(
            "{}{}",
            route("auth = \"bearer\""),
            route("auth = \"none\"")
        ))
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].name.as_str(), r[0].index, r[1].index),
            ("/a/**", 0, 1)
        );
        assert!(r[0].methods.is_empty(), "any method");
        assert_eq!(r[0].policy.signature, SignatureMode::Auto);
        assert_eq!(r[0].policy.idempotency, IdempotencyMode::Auto);
        assert!(r[0].policy.public_url.is_none() && r[0].policy.cover.is_empty());
        assert!(!r[0].policy.sign_responses);
        assert_eq!(
            r[1].policy.signature,
            SignatureMode::Off,
            "no client to verify"
        );
        assert_eq!(
            r[1].policy.idempotency,
            IdempotencyMode::Off,
            "no client to key"
        );
    }

    #[test]
    fn methods_are_uppercased_and_the_signature_policy_is_the_default_mode() {
        let toml = format!(
            "[signatures]\npolicy = \"required\"\n{}",
            route("auth = \"bearer\"\nmethods = [\"get\", \"Post\"]\nname = \"api\"")
        );
        let r = routes(&toml).unwrap();
        assert_eq!(r[0].methods, [Method::GET, Method::POST]);
        assert_eq!(r[0].name, "api");
        assert_eq!(r[0].policy.signature, SignatureMode::Required);
    }

    #[test]
    fn each_bad_value_is_refused_by_the_route_and_key() {
        for (fields, key) in [
            (
                "auth = \"bearer\"\nmethods = [\"GE T\"]",
                "routes[1].methods",
            ),
            (
                "auth = \"none\"\nsignature = \"required\"",
                "routes[1].signature",
            ),
            (
                "auth = \"none\"\nsignature_cover = [\"@query\"]",
                "routes[1].signature",
            ),
            (
                "auth = \"none\"\nidempotency = \"required\"",
                "routes[1].idempotency",
            ),
            (
                "auth = \"bearer\"\npublic_url = \"api.example.com\"",
                "routes[1].public_url",
            ),
            (
                "auth = \"bearer\"\nsignature_cover = [\"Date\"]",
                "routes[1].signature_cover[0]",
            ),
            ("auth = \"none\"\naudience = \"api\"", "routes[1].scopes"),
            (
                "auth = \"bearer\"\nscopes = [\"a\", \"\"]",
                "routes[1].scopes[1]",
            ),
            (
                "auth = \"bearer\"\naudience = \"a\\\"b\"",
                "routes[1].audience",
            ),
            (
                "auth = \"none\"\nchecks = { ip = \"report\" }",
                "routes[1].checks",
            ),
            (
                "auth = \"bearer\"\nsign_responses = true",
                "routes[1].sign_responses",
            ),
        ] {
            let toml = format!("{}{}", route("auth = \"none\""), route(fields));
            let e = routes(&toml).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{key}: ")), "{fields}: {e}");
        }
        // A public route may say plainly that it has no signature nor keys.
        routes(&route(
            "auth = \"none\"\nsignature = \"off\"\nidempotency = \"off\"",
        ))
        .unwrap();
    }
}
