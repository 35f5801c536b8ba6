//! Reading a bearer credential from `Authorization` (RFC 6750 §2.1). Whether it is valid is
//! the issuer's call; this only says what the request carries.

use http::{HeaderMap, header};

/// What a request carries in `Authorization`.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// No credential, or one of another scheme (RFC 6750 §3.1: no error code then).
    Missing,
    /// A `Bearer` credential that is not a b64token, or several `Authorization` headers.
    Malformed(&'static str),
    Bearer(&'a str),
}

/// The bearer credential of a request, if any.
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = all.next() else {
        return Presented::Missing;
    };
    if all.next().is_some() {
        return Presented::Malformed("send exactly one Authorization header");
    }
    let Ok(value) = value.to_str() else {
        return Presented::Malformed("the Authorization header is not visible ASCII");
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("bearer") {
            Presented::Malformed("the Bearer credential is empty")
        } else {
            Presented::Missing
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Presented::Missing;
    }
    let token = rest.trim_matches(' ');
    if is_b64token(token) {
        Presented::Bearer(token)
    } else {
        Presented::Malformed("the Bearer credential is not a b64token (RFC 6750 §2.1)")
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn bearer_values_are_read_case_insensitively() {
        assert_eq!(
            presented(&h(&["Bearer wdn_at_abc-._~+/=="])),
            Presented::Bearer("wdn_at_abc-._~+/==")
        );
        assert_eq!(presented(&h(&["bearer abc"])), Presented::Bearer("abc"));
    }

    #[test]
    fn other_schemes_and_absence_are_missing() {
        assert_eq!(presented(&h(&[])), Presented::Missing);
        assert_eq!(presented(&h(&["Basic Zm9vOmJhcg=="])), Presented::Missing);
    }

    #[test]
    fn malformed_bearers_are_refused() {
        assert!(matches!(
            presented(&h(&["Bearer"])),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            presented(&h(&["Bearer a b"])),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            presented(&h(&["Bearer ==="])),
            Presented::Malformed(_)
        ));
        assert!(matches!(
            presented(&h(&["Bearer a", "Bearer b"])),
            Presented::Malformed(_)
        ));
    }
}
