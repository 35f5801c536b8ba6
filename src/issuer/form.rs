//! Reading what token endpoints receive: a bounded body, strict form or JSON parameters
//! (duplicates refused, empty values treated as absent), and HTTP Basic client credentials
//! (RFC 6749 §2.3.1: form-decoded after base64).

use std::collections::BTreeMap;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// Why parameters could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    TooLarge {
        limit: usize,
    },
    /// The whole body did not arrive within the deadline.
    TimedOut,
    Unreadable,
    UnsupportedMediaType,
    Malformed(String),
    Duplicate(String),
}

/// The body's media type, lowercased, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads a whole body of at most `limit` bytes, which must arrive within `deadline`
/// (`tokens.request_read_timeout`): a client trickling a body in cannot hold a buffer and a
/// connection for ever. These endpoints are not on the proxy's hot path, so a tokio timer is fine.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    deadline: std::time::Duration,
) -> Result<Bytes, FormError> {
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(FormError::TimedOut),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(FormError::TooLarge { limit })
        }
        Ok(Err(_)) => Err(FormError::Unreadable),
    }
}

/// Parameters by name; each name at most once.
pub type Params = BTreeMap<String, String>;

/// Parses `application/x-www-form-urlencoded`. A repeated name is an error (RFC 6749 §3.2);
/// a name with an empty value counts as absent.
pub fn parse_form(body: &[u8]) -> Result<Params, FormError> {
    let mut out = Params::new();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if seen.iter().any(|s| *s == k) {
            return Err(FormError::Duplicate(k.into_owned()));
        }
        seen.push(k.clone().into_owned());
        if !v.is_empty() {
            out.insert(k.into_owned(), v.into_owned());
        }
    }
    Ok(out)
}

/// Parses a flat JSON object of strings (numbers and booleans are taken as their text;
/// nested values are refused). Duplicate keys are refused.
pub fn parse_json(body: &[u8]) -> Result<Params, FormError> {
    // serde_json keeps the last duplicate silently; walk the object ourselves to see them.
    struct Strict(Params);
    impl<'de> serde::Deserialize<'de> for Strict {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Strict;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Strict, A::Error> {
                    let mut out = Params::new();
                    let mut seen = Vec::new();
                    while let Some(k) = m.next_key::<String>()? {
                        let v: serde_json::Value = m.next_value()?;
                        if seen.contains(&k) {
                            return Err(serde::de::Error::custom(format!(
                                "duplicate parameter {k}"
                            )));
                        }
                        seen.push(k.clone());
                        let text = match v {
                            serde_json::Value::Null => continue,
                            serde_json::Value::String(s) => s,
                            serde_json::Value::Bool(b) => b.to_string(),
                            serde_json::Value::Number(n) => n.to_string(),
                            _ => {
                                return Err(serde::de::Error::custom(format!(
                                    "parameter {k} must be a string"
                                )));
                            }
                        };
                        if !text.is_empty() {
                            out.insert(k, text);
                        }
                    }
                    Ok(Strict(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Strict>(body)
        .map(|s| s.0)
        .map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("duplicate parameter ") {
                // serde_json appends " at line L column C"; the name itself may hold spaces.
                Some(rest) => FormError::Duplicate(
                    rest.rsplit_once(" at line ")
                        .map_or(rest, |(name, _)| name)
                        .to_string(),
                ),
                None => FormError::Malformed(
                    "the body is not a JSON object of string parameters".into(),
                ),
            }
        })
}

/// Parameters from a form or JSON body, by its media type.
pub fn parse_params(
    headers: &HeaderMap,
    body: &[u8],
    allow_json: bool,
) -> Result<Params, FormError> {
    match media_type(headers).as_deref() {
        Some("application/x-www-form-urlencoded") => parse_form(body),
        Some("application/json") if allow_json => parse_json(body),
        _ => Err(FormError::UnsupportedMediaType),
    }
}

/// Credentials from `Authorization: Basic`, form-decoded. `Ok(None)` when there is no Basic
/// header; `Err` when there is one and it is malformed.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, FormError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(FormError::Malformed(
            "more than one Authorization header".into(),
        ));
    }
    let v = v
        .to_str()
        .map_err(|_| FormError::Malformed("Authorization is not ASCII".into()))?;
    let Some((scheme, rest)) = v.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| FormError::Malformed("Basic credentials are not base64".into()))?;
    let text = String::from_utf8(raw)
        .map_err(|_| FormError::Malformed("Basic credentials are not UTF-8".into()))?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(|| FormError::Malformed("Basic credentials lack a ':'".into()))?;
    // One form-encoded value: `+` is a space and `%XX` a byte. (Parsing it as a form would
    // also cut it at a raw `&` and so compare another credential than the one sent.)
    let decode = |s: &str| -> String {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Ok(Some((decode(id), decode(secret))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_empty_values_are_absent() {
        assert_eq!(
            parse_form(b"a=1&a=2"),
            Err(FormError::Duplicate("a".into()))
        );
        let p = parse_form(b"a=&b=x+y%21").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p["b"], "x y!");
    }

    #[test]
    fn json_must_be_a_flat_object() {
        let p = parse_json(br#"{"client_id":"c","n":3,"x":null}"#).unwrap();
        assert_eq!(p["client_id"], "c");
        assert_eq!(p["n"], "3");
        assert!(parse_json(br#"{"a":{"b":1}}"#).is_err());
        assert!(parse_json(b"[1]").is_err());
        assert_eq!(
            parse_json(br#"{"a":"1","a":"2"}"#),
            Err(FormError::Duplicate("a".into()))
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut h = HeaderMap::new();
        // RFC 6749 §2.3.1 example, then a secret with reserved characters.
        h.insert(
            "authorization",
            "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW".parse().unwrap(),
        );
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("s6BhdRkqt3".into(), "gX1fBat3bV".into()))
        );
        let enc = base64::engine::general_purpose::STANDARD.encode("my%3Aclient:p%40ss+w%2Bord");
        h.insert("authorization", format!("Basic {enc}").parse().unwrap());
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("my:client".into(), "p@ss w+ord".into()))
        );
        h.insert("authorization", "Basic !!!".parse().unwrap());
        assert!(basic_credentials(&h).is_err());
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(basic_credentials(&h).unwrap(), None);
    }

    /// Found by `fuzzing::proptests::authorization_yields_one_well_formed_credential`.
    #[test]
    fn a_raw_ampersand_is_part_of_a_basic_credential() {
        let mut h = HeaderMap::new();
        let enc = base64::engine::general_purpose::STANDARD.encode("id&x:p&ss=1+2");
        h.insert("authorization", format!("Basic {enc}").parse().unwrap());
        assert_eq!(
            basic_credentials(&h).unwrap(),
            Some(("id&x".into(), "p&ss=1 2".into()))
        );
    }

    /// Found by `fuzzing::proptests::json_parameters_round_trip_and_duplicates_are_named`.
    #[test]
    fn a_duplicate_json_parameter_is_named_whole() {
        assert_eq!(
            parse_json(br#"{"a b":"1","a\u0020b":"2"}"#),
            Err(FormError::Duplicate("a b".into()))
        );
        assert_eq!(
            parse_json(br#"{"x at line 1":"1","x at line 1":"2"}"#),
            Err(FormError::Duplicate("x at line 1".into()))
        );
    }
}
