//! Value checks shared by several sections: CIDR lists, public URLs and signature component
//! names (identifier, scope and audience checks are in `scope.rs`).

use http::Uri;
use ipnet::IpNet;

use super::{ConfigError, invalid};
use crate::policy::PublicUrl;

/// Parses CIDRs (a bare address means a single host), naming `key[i]` on failure.
pub fn parse_cidrs(key: &str, items: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = s.trim();
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    invalid(
                        format!("{key}[{i}]"),
                        format!("'{s}' is not a CIDR like 10.0.0.0/8"),
                    )
                })
        })
        .collect()
}

/// Checks that each `(key, path)` starts with `/` and that no two are the same, naming the
/// later one's key ("already used by another {what}").
pub(super) fn distinct_paths(paths: &[(&str, &String)], what: &str) -> Result<(), ConfigError> {
    for (i, (key, path)) in paths.iter().enumerate() {
        if !path.starts_with('/') {
            return Err(invalid(*key, format!("'{path}' must start with /")));
        }
        if paths[..i].iter().any(|(_, other)| other == path) {
            return Err(invalid(
                *key,
                format!("'{path}' is already used by another {what}"),
            ));
        }
    }
    Ok(())
}

/// Parses a public URL: `http(s)://host[:port][/prefix]`, no query.
pub(super) fn parse_public_url(key: &str, url: &str) -> Result<PublicUrl, ConfigError> {
    let uri: Uri = url.parse().map_err(|_| {
        invalid(
            key,
            format!("'{url}' is not a URL like https://api.example.com"),
        )
    })?;
    let scheme = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        Some(s) if s.eq_ignore_ascii_case("http") => "http",
        _ => {
            return Err(invalid(
                key,
                format!("'{url}' must start with https:// or http://"),
            ));
        }
    };
    let authority = uri
        .authority()
        .filter(|a| !a.host().is_empty() && !a.as_str().contains('@'))
        .ok_or_else(|| invalid(key, format!("'{url}' has no host")))?;
    if uri.query().is_some() {
        return Err(invalid(key, "must not carry a query"));
    }
    Ok(PublicUrl {
        scheme: scheme.to_owned(),
        authority: authority.as_str().to_owned(),
        prefix: uri.path().trim_end_matches('/').to_owned(),
    })
}

/// Component names a signature must cover: lowercase header names or request-derived
/// components (`@query`, `@scheme`, …).
pub(super) fn validate_components(key: &str, names: &[String]) -> Result<Vec<String>, ConfigError> {
    const DERIVED: [&str; 7] = [
        "@method",
        "@target-uri",
        "@authority",
        "@scheme",
        "@request-target",
        "@path",
        "@query",
    ];
    for (i, name) in names.iter().enumerate() {
        let ok = if name.starts_with('@') {
            DERIVED.contains(&name.as_str())
        } else {
            http::HeaderName::from_bytes(name.as_bytes()).is_ok_and(|h| h.as_str() == name)
        };
        if !ok {
            return Err(invalid(
                format!("{key}[{i}]"),
                format!(
                    "'{name}' is not a lowercase header name or one of {}",
                    DERIVED.join(" ")
                ),
            ));
        }
    }
    Ok(names.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_take_bare_addresses_and_spaces_and_name_the_index() {
        let items = [" 10.0.0.0/8 ", "192.0.2.7", "2001:db8::/32"].map(String::from);
        let nets = parse_cidrs("k", &items).unwrap();
        let nets: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        let e = parse_cidrs("x.y", &["10.0.0.0/8".into(), "10.0.0.0/33".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("x.y[1]: ") && e.contains("10.0.0.0/33"),
            "{e}"
        );
        assert!(parse_cidrs("k", &[]).unwrap().is_empty());
    }

    #[test]
    fn public_urls_keep_scheme_authority_and_prefix() {
        let u = parse_public_url("k", "HTTPS://api.example.com/pay/").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.authority.as_str(), u.prefix.as_str()),
            ("https", "api.example.com", "/pay")
        );
        let u = parse_public_url("k", "http://127.0.0.1:8080").unwrap();
        assert_eq!((u.scheme.as_str(), u.prefix.as_str()), ("http", ""));
        for bad in [
            "example.com",
            "ws://a.example",
            "https://user@a.example",
            "https://a.example/?x",
        ] {
            let e = parse_public_url("r.public_url", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("r.public_url: "), "{bad}: {e}");
        }
    }

    #[test]
    fn components_are_lowercase_fields_or_known_derived_ones() {
        let ok = ["@method", "@target-uri", "@query", "content-digest"].map(String::from);
        assert_eq!(validate_components("k", &ok).unwrap(), ok);
        for bad in ["Content-Digest", "@status", "@Method", "a b"] {
            let e = validate_components("c", &["date".into(), bad.into()])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("c[1]: "), "{bad}: {e}");
        }
    }
}
