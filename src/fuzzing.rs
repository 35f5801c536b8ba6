//! Entry points for the fuzz targets (`fuzz/`) and the property tests: each takes attacker
//! bytes, runs one family of request parsers on them, and asserts what must hold of the result.
//! A panic here is a finding: a parser panicked, or an invariant (a round trip, a bound) broke.
//! Compiled for tests and with the `fuzzing` feature only; not part of Warden's API.

use std::net::IpAddr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{SigningKey, VerifyingKey};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use ipnet::IpNet;

use crate::digest::{self, DigestVerifier};
use crate::gate::{bearer, client_ip, idempotency};
use crate::httpsig::{self, RequestView};
use crate::issuer::{form, tokens_api};
use crate::router::{self, Router};
use crate::scope;

#[cfg(test)]
mod proptests;

/// A fuzz target: attacker bytes in, a panic on a finding.
pub type Target = fn(&[u8]);

/// The families by name, in the order of [`dispatch`]'s selector byte.
pub const TARGETS: [(&str, Target); 10] = [
    ("signature", signature),
    ("content_digest", content_digest),
    ("path", path),
    ("authorization", authorization),
    ("idempotency_key", idempotency_key),
    ("form", form_body),
    ("json", json_body),
    ("token_body", token_body),
    ("forwarded_for", forwarded_for),
    ("scopes", scopes),
];

/// Builds the state the targets share (routes, keys, trusted ranges) up front, so that a fork
/// server forks after it and every run starts alike (AFL's "stability").
pub fn init() {
    LazyLock::force(&ROUTER);
    LazyLock::force(&SIGNING_KEY);
    LazyLock::force(&TRUSTED);
}

/// One target for all: the first byte picks the family, the rest is its input.
pub fn dispatch(data: &[u8]) {
    if let Some((selector, rest)) = data.split_first() {
        (TARGETS[usize::from(*selector) % TARGETS.len()].1)(rest);
    }
}

/// The `\n`-separated lines of a fuzz input; header values cannot hold a line feed, so inputs
/// that carry several fields use it as the separator.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
}

/// `name: value` lines as a header map; lines that are no valid field are skipped.
fn header_lines<'a>(lines: impl Iterator<Item = &'a [u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

/// Every line as one value of the field `name`.
fn field_lines(name: HeaderName, data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines(data) {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(name.clone(), value);
        }
    }
    headers
}

// ------------------------------------------------------------------ signatures

static SIGNING_KEY: LazyLock<(SigningKey, VerifyingKey)> = LazyLock::new(|| {
    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    (key, public)
});

/// `Signature-Input` and `Signature` (RFC 9421), then the signature base over a request.
/// Lines: `Signature-Input`, `Signature`, the request target, the authority, then header lines.
///
/// Holds: a parsed signature serialises (`label=@signature-params`, `label=:bytes:`) back to
/// fields that parse to the same signature; a base is ASCII, one `identifier: value` line per
/// covered component in order, and ends with the `@signature-params` line; signing the same
/// components and parameters gives the same base and a signature that verifies.
pub fn signature(data: &[u8]) {
    let mut lines = lines(data);
    let input = lines.next().unwrap_or_default();
    let signature = lines.next().unwrap_or_default();
    let target = String::from_utf8_lossy(lines.next().unwrap_or(b"/"));
    let authority = String::from_utf8_lossy(lines.next().unwrap_or(b"api.example"));
    let headers = header_lines(lines);

    let Ok(parsed) = httpsig::parse_signature_fields(input, signature) else {
        return;
    };
    assert!(!parsed.is_empty(), "an accepted field holds a signature");
    for (i, sig) in parsed.iter().enumerate() {
        assert!(
            parsed[..i].iter().all(|s| s.label() != sig.label()),
            "labels are unique"
        );
        let again = httpsig::parse_signature_fields(
            format!("{}={}", sig.label(), sig.signature_params_value()).as_bytes(),
            format!("{}=:{}:", sig.label(), STANDARD.encode(sig.signature())).as_bytes(),
        );
        assert_eq!(
            again.as_deref(),
            Ok(std::slice::from_ref(sig)),
            "round trip"
        );

        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (&*target, None),
        };
        let mut view = RequestView::new("POST", "https", &authority, path, query, &headers);
        if !target.starts_with('/') {
            view = view.with_request_target(&target);
        }
        if let Ok(base) = httpsig::signature_base(&view, sig) {
            assert!(base.is_ascii(), "a base is ascii");
            let base_lines: Vec<&str> = base.split('\n').collect();
            assert_eq!(base_lines.len(), sig.components().len() + 1, "{base:?}");
            for (line, component) in base_lines.iter().zip(sig.components()) {
                assert!(
                    line.strip_prefix(component.identifier())
                        .is_some_and(|rest| rest.starts_with(": ")),
                    "{line:?} names {}",
                    component.identifier()
                );
            }
            let last = base_lines.last().copied().unwrap_or_default();
            assert_eq!(
                last.strip_prefix("\"@signature-params\": "),
                Some(sig.signature_params_value())
            );
            // Ed25519 costs milliseconds in a debug build: one base in four is signed.
            if base.len() % 4 == 0 {
                assert_signs_and_verifies(&view, sig, &base);
            }
        }
        let _ = httpsig::verify(&view, sig, &SIGNING_KEY.1);
        let _ = httpsig::check_times(sig.params(), 1_700_000_000, 300, 5, true);
        let _ = httpsig::check_times(sig.params(), i64::MIN, u64::MAX, u64::MAX, false);
    }
}

/// Signs `sig`'s components and parameters over `view` and checks the result against the
/// verifier: the signer and the verifier build the same base.
fn assert_signs_and_verifies(view: &RequestView<'_>, sig: &httpsig::ParsedSignature, base: &str) {
    let (key, public) = &*SIGNING_KEY;
    let components: Vec<&str> = sig.components().iter().map(|c| c.identifier()).collect();
    let params: Vec<httpsig::SigParam> = sig.params().iter().cloned().collect();
    let signed = httpsig::sign(view, sig.label(), &components, &params, key);
    let Ok(signed) = signed else {
        panic!("a verifiable signature can be made: {signed:?}");
    };
    assert_eq!(signed.base, base);
    let parsed = httpsig::parse_signature_fields(
        signed.signature_input.as_bytes(),
        signed.signature.as_bytes(),
    );
    let Ok([again]) = parsed.as_deref() else {
        panic!("a made signature parses: {parsed:?}");
    };
    match sig.params().alg() {
        Some(alg) if alg != httpsig::ALGORITHM => assert!(matches!(
            httpsig::verify(view, again, public),
            Err(httpsig::SigError::AlgorithmNotAllowed { .. })
        )),
        _ => assert_eq!(httpsig::verify(view, again, public), Ok(())),
    }
}

// ------------------------------------------------------------------ content digest

/// `Content-Digest` (RFC 9530): the first line is the field value, the rest the body.
///
/// Holds: accepted members are supported algorithms, once each, of the right length, and
/// re-serialise to a value that parses the same; the verifier agrees with a plain digest of
/// the body, however the body is chunked, and names the first member that does not match.
pub fn content_digest(data: &[u8]) {
    let (value, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(value) = HeaderValue::from_bytes(value) {
        let mut headers = HeaderMap::new();
        headers.insert("content-digest", value);
        let _ = DigestVerifier::from_headers(&headers);
    }
    let Ok(value) = std::str::from_utf8(value) else {
        return;
    };
    let Ok(members) = digest::parse_content_digest(value) else {
        return;
    };
    assert!(!members.is_empty());
    for (i, (algorithm, bytes)) in members.iter().enumerate() {
        assert_eq!(bytes.len(), algorithm.output_len());
        assert!(
            members[..i].iter().all(|(a, _)| a != algorithm),
            "{value:?}"
        );
    }
    let again = members
        .iter()
        .map(|(a, d)| format!("{a}=:{}:", STANDARD.encode(d)))
        .collect::<Vec<_>>()
        .join(", ");
    assert_eq!(digest::parse_content_digest(&again).as_ref(), Ok(&members));

    let first_mismatch = members
        .iter()
        .find(|(a, d)| a.digest(body) != *d)
        .map(|(a, _)| *a);
    let expected = match first_mismatch {
        Some(algorithm) => Err(digest::DigestError::Mismatch { algorithm }),
        None => Ok(()),
    };
    let Ok(mut whole) = DigestVerifier::new(members.clone()) else {
        panic!("parsed members make a verifier");
    };
    whole.update(body);
    assert_eq!(whole.finish(), expected);
    let Ok(mut chunked) = DigestVerifier::from_value(value) else {
        panic!("a parsed value makes a verifier");
    };
    let (a, b) = body.split_at(body.len() / 3);
    chunked.update(a);
    chunked.update(&[]);
    chunked.update(b);
    assert_eq!(chunked.finish(), expected);
}

// ------------------------------------------------------------------ paths

/// Routes covering the usual shapes; `/admin/**` sits beside a catch-all.
const ROUTES: &str = r#"
[[routes]]
path = "/v1/orders/{id}"
methods = ["GET", "PUT"]
auth = "bearer"

[[routes]]
path = "/admin/**"
auth = "bearer"

[[routes]]
path = "/public/*/files/**"
auth = "none"

[[routes]]
path = "/**"
methods = ["POST"]
auth = "none"
"#;

static ROUTER: LazyLock<Option<(Router, crate::Settings)>> = LazyLock::new(|| {
    let settings = crate::Settings::from_toml(ROUTES).ok()?;
    Some((
        Router::new(&settings.endpoints, settings.routes.clone()),
        settings,
    ))
});

/// A request target as hyper hands it over (parsed as a `Uri`), then the canonical-path check
/// and the router; the raw bytes also go to the check directly.
///
/// Holds: a path the check accepts starts with `/` and, decoded once as an upstream decodes
/// it, has no `.` or `..` segment, no `/`, `\` or NUL inside a segment and no empty segment
/// but a trailing one; a path routed to a route is one its pattern matches.
pub fn path(data: &[u8]) {
    // Control characters never reach the check: the request line's parser refuses them.
    if let Ok(text) = std::str::from_utf8(data)
        && !text.bytes().any(|b| b.is_ascii_control())
        && let Ok(normal) = router::normalize_path(text)
    {
        assert_unambiguous(text);
        assert_unambiguous(&normal.forwarded);
    }
    let Ok(uri) = Uri::try_from(data) else {
        return;
    };
    let Ok(normal) = router::normalize_path(uri.path()) else {
        return;
    };
    assert_unambiguous(uri.path());
    // The form forwarded upstream is itself in normal form: normalising it changes nothing.
    let again = router::normalize_path(&normal.forwarded);
    assert!(
        again.is_ok_and(|n| n.forwarded == normal.forwarded && n.decoded == normal.decoded),
        "{:?}",
        uri.path()
    );
    let path = &*normal.decoded;
    let Some((routes, settings)) = &*ROUTER else {
        panic!("the fuzz routes load");
    };
    for method in [Method::GET, Method::POST, Method::DELETE] {
        match routes.resolve(&method, path) {
            router::Target::Proxy(route) => assert!(route.pattern.matches(path), "{path}"),
            router::Target::Tokens => {
                let base = settings.endpoints.tokens.as_ref();
                let _ = base.and_then(|b| b.resolve(path));
            }
            _ => {}
        }
    }
}

/// Asserts that `path` reads the same to every upstream (see [`path`]).
pub(crate) fn assert_unambiguous(path: &str) {
    let Some(rest) = path.strip_prefix('/') else {
        panic!("{path:?} is not absolute");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(segment).collect();
        assert!(
            !matches!(&decoded[..], b"." | b".."),
            "{path:?} has a dot-segment"
        );
        assert!(
            !decoded.iter().any(|b| matches!(b, b'/' | b'\\' | 0)),
            "{path:?} hides a separator or NUL"
        );
        assert!(
            !segment.is_empty() || i + 1 == segments.len(),
            "{path:?} has an empty segment"
        );
    }
}

// ------------------------------------------------------------------ Authorization

/// `Authorization`, one field line per input line, read as a bearer credential and as HTTP
/// Basic client credentials.
///
/// Holds: a bearer token is the one b64token after the scheme of the only field line; a
/// request with a bearer token has no Basic credentials; Basic credentials are the
/// form-decoded halves of the decoded pair, and encoding them again gives them back.
pub fn authorization(data: &[u8]) {
    let headers = field_lines(header::AUTHORIZATION, data);
    let presented = bearer::presented(&headers);
    let basic = form::basic_credentials(&headers);
    if let bearer::Presented::Bearer(token) = presented {
        let values: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
        assert_eq!(values.len(), 1);
        let value = values[0].to_str().unwrap_or_default();
        let (scheme, rest) = value.split_once(' ').unwrap_or_default();
        assert!(scheme.eq_ignore_ascii_case("bearer"));
        assert_eq!(rest.trim_matches(' '), token);
        let body = token.trim_end_matches('=');
        assert!(!body.is_empty());
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
            "{token:?}"
        );
        assert_eq!(basic, Ok(None), "a bearer request has no Basic credentials");
    }
    if let Ok(Some((id, secret))) = basic {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (_, encoded) = value.split_once(' ').unwrap_or_default();
        let pair = STANDARD.decode(encoded.trim()).unwrap_or_default();
        let pair = String::from_utf8(pair).unwrap_or_default();
        let (raw_id, raw_secret) = pair.split_once(':').unwrap_or_default();
        assert_eq!(
            (form_decoded(raw_id), form_decoded(raw_secret)),
            (id.clone(), secret.clone()),
            "{pair:?}"
        );
        assert_eq!(basic_round_trip(&id, &secret), Ok(Some((id, secret))));
    }
}

/// A value decoded the way RFC 6749 §2.3.1 encodes it: `+` is a space, `%XX` a byte.
fn form_decoded(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// Basic credentials for `id` and `secret`, encoded as RFC 6749 §2.3.1 says, then read back.
pub(crate) fn basic_round_trip(
    id: &str,
    secret: &str,
) -> Result<Option<(String, String)>, form::FormError> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    let mut headers = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(pair)));
    headers.insert(
        header::AUTHORIZATION,
        value.map_err(|_| form::FormError::Unreadable)?,
    );
    form::basic_credentials(&headers)
}

// ------------------------------------------------------------------ idempotency keys

/// Idempotency keys: the whole input as one field value, then its lines spread over the two
/// configured names.
///
/// Holds: an accepted key is 1-255 visible ASCII characters; a plain value is the key itself,
/// an sf-string's key serialises back to a value with the same key; a key taken from several
/// names is the key of every one of them.
pub fn idempotency_key(data: &[u8]) {
    if let Ok(key) = idempotency::parse_key(data) {
        assert_accepted_key(data, &key);
    }
    let names = [
        HeaderName::from_static("idempotency-key"),
        HeaderName::from_static("x-idempotency-key"),
    ];
    let mut headers = HeaderMap::new();
    for (i, line) in lines(data).enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(names[i % 2].clone(), value);
        }
    }
    match idempotency::key_from(&headers, &names) {
        Ok(Some(key)) => {
            for name in &names {
                let values: Vec<_> = headers.get_all(name).iter().collect();
                assert!(values.len() <= 1);
                if let Some(value) = values.first() {
                    assert_eq!(idempotency::parse_key(value.as_bytes()).as_ref(), Ok(&key));
                }
            }
        }
        Ok(None) => assert!(headers.is_empty()),
        Err(problem) => assert_eq!(problem.code(), "idempotency_key_invalid"),
    }
}

pub(crate) fn assert_accepted_key(value: &[u8], key: &str) {
    assert!(
        (1..=idempotency::MAX_KEY_LEN).contains(&key.len()),
        "{key:?}"
    );
    assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key:?}");
    if value.first() == Some(&b'"') {
        let Ok(string) = sfv::String::from_string(key.to_owned()) else {
            panic!("{key:?} is a valid sf-string");
        };
        let again = sfv::FieldType::serialize(&sfv::Item::new(string));
        assert_eq!(idempotency::parse_key(again.as_bytes()).as_deref(), Ok(key));
    } else {
        assert_eq!(key.as_bytes(), value);
    }
}

// ------------------------------------------------------------------ token endpoint bodies

/// `application/x-www-form-urlencoded` parameters, as `/v1/auth` and the OAuth endpoints read
/// them.
///
/// Holds: accepted parameters have non-empty values and serialise to a body that parses the
/// same; a refused duplicate is a name that occurs twice.
pub fn form_body(data: &[u8]) {
    match form::parse_form(data) {
        Ok(params) => {
            assert!(params.values().all(|v| !v.is_empty()));
            let mut again = form_urlencoded::Serializer::new(String::new());
            again.extend_pairs(&params);
            assert_eq!(form::parse_form(again.finish().as_bytes()), Ok(params));
        }
        Err(form::FormError::Duplicate(name)) => {
            let times = form_urlencoded::parse(data)
                .filter(|(k, _)| *k == name)
                .count();
            assert!(times >= 2, "{name:?} is not repeated");
        }
        Err(e) => panic!("a form body cannot fail with {e:?}"),
    }
}

/// A JSON object of parameters, as the OAuth endpoints read it.
///
/// Holds: accepted parameters have non-empty values and serialise to a body that parses the
/// same; a refused duplicate is a key that occurs twice.
pub fn json_body(data: &[u8]) {
    match form::parse_json(data) {
        Ok(params) => {
            assert!(params.values().all(|v| !v.is_empty()));
            let again = serde_json::to_vec(&params).unwrap_or_default();
            assert_eq!(form::parse_json(&again), Ok(params));
        }
        Err(form::FormError::Duplicate(name)) => {
            let keys = json_keys(data);
            let times = keys.iter().filter(|k| **k == name).count();
            assert!(times >= 2, "{name:?} is not repeated in {keys:?}");
        }
        Err(_) => {}
    }
}

/// The keys of a JSON object in order, repeats included, as far as it parses.
fn json_keys(data: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    struct Keys<'a>(&'a mut Vec<String>);
    impl<'de> DeserializeSeed<'de> for Keys<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Keys<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            while let Some(k) = m.next_key::<String>()? {
                self.0.push(k);
                m.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }
    let mut keys = Vec::new();
    let _ = Keys(&mut keys).deserialize(&mut serde_json::Deserializer::from_slice(data));
    keys
}

/// The token API's JSON bodies (`POST {base}`, `rename`, `disable`, `enable`), then the
/// checks a create body goes through before the store.
///
/// Holds: a vetted spec has a valid name, 1 to 64 unique valid scopes, each granted by every
/// grantor, the grantor's audience when it has one, and an expiry in the future.
pub fn token_body(data: &[u8]) {
    const NOW: i64 = 1_700_000_000;
    for op in ["rename", "disable", "enable"] {
        if let Err(p) = tokens_api::parse_body(op, data, 128, NOW) {
            assert_eq!(p.into_response().status(), 400);
        }
    }
    let spec = match tokens_api::parse_body("create", data, 128, NOW) {
        Ok(spec) => spec,
        Err(p) => {
            assert_eq!(p.into_response().status(), 400);
            return;
        }
    };
    let Some(spec) = spec else {
        panic!("a create body gives a spec");
    };
    let token: Vec<String> = ["table://**", "read", "level://*", "t://a.*/b"]
        .map(String::from)
        .to_vec();
    let client: Vec<String> = ["table://my.**", "read", "t://**"]
        .map(String::from)
        .to_vec();
    for audience in [None, Some("orders")] {
        let mut vetted = spec.clone();
        if vetted.vet(128, &[&token, &client], audience, NOW).is_err() {
            continue;
        }
        assert!(tokens_api::check_name("name", &vetted.name, 128).is_ok());
        assert!((1..=tokens_api::MAX_SCOPES).contains(&vetted.scopes.len()));
        for (i, s) in vetted.scopes.iter().enumerate() {
            assert!(!vetted.scopes[..i].contains(s), "{s} twice");
            assert!(scope::check(s).is_ok());
            assert!(
                scope::granted(s, &token) && scope::granted(s, &client),
                "{s}"
            );
        }
        if let Some(held) = audience {
            assert_eq!(vetted.audience.as_deref(), Some(held));
        }
        assert!(vetted.expires_at.is_none_or(|at| at > NOW));
    }
}

// ------------------------------------------------------------------ X-Forwarded-For

/// Trusted proxies for [`forwarded_for`]: one IPv4 and one IPv6 range.
pub(crate) static TRUSTED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    ["10.0.0.0/8", "fd00::/8"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
});

/// `X-Forwarded-For`: the first byte picks the peer (trusted or not, IPv4, IPv6 or
/// IPv4-mapped), the lines after it are field lines.
///
/// Holds: a peer that is not a trusted proxy is the client, whatever the header says.
pub fn forwarded_for(data: &[u8]) {
    let (selector, rest) = data.split_first().unwrap_or((&0, &[]));
    let peers: [IpAddr; 4] = [
        IpAddr::from([10, 0, 0, 1]),
        IpAddr::from([203, 0, 113, 9]),
        IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, 1]),
        IpAddr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]),
    ];
    let peer = peers[usize::from(*selector) % peers.len()];
    let headers = field_lines(HeaderName::from_static("x-forwarded-for"), rest);
    let ip = client_ip::resolve(peer, &headers, &TRUSTED);
    if !client_ip::is_trusted(peer, &TRUSTED) {
        assert_eq!(ip, peer);
    }
    assert_eq!(client_ip::resolve(peer, &headers, &[]), peer.to_canonical());
}

// ------------------------------------------------------------------ scopes

/// Scopes: the first line is what a credential holds, the second what is asked for (OAuth
/// `scope`, a token API body), both space-separated.
///
/// Holds: a scope grants itself exactly when it is valid; only valid scopes grant or are
/// granted; granting is transitive; a narrowed request is the asked scopes, once each, each
/// granted, and a refusal names an asked scope that is not granted.
pub fn scopes(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (held_text, wanted_text) = text.split_once('\n').unwrap_or((&text, ""));
    let held: Vec<String> = scope::split_list(held_text)
        .take(8)
        .map(str::to_owned)
        .collect();
    let wanted: Vec<&str> = scope::split_list(wanted_text).take(8).collect();
    for s in held
        .iter()
        .map(String::as_str)
        .chain(wanted.iter().copied())
    {
        assert!(!s.is_empty() && !s.contains(' '));
        assert_eq!(scope::grants(s, s), scope::check(s).is_ok(), "{s:?}");
    }
    for h in &held {
        for w in &wanted {
            if !scope::grants(h, w) {
                continue;
            }
            assert!(scope::check(h).is_ok() && scope::check(w).is_ok());
            for c in &wanted {
                if scope::grants(w, c) {
                    assert!(scope::grants(h, c), "{h} grants {w} grants {c}");
                }
            }
        }
    }
    let asked: Vec<&str> = scope::split_list(wanted_text).collect();
    match crate::issuer::narrow_scopes(Some(wanted_text), &held) {
        Ok(narrowed) => {
            for (i, s) in narrowed.iter().enumerate() {
                assert!(!narrowed[..i].contains(s), "{s} twice");
                assert!(asked.contains(&s.as_str()) && scope::granted(s, &held));
            }
            assert!(asked.iter().all(|a| narrowed.iter().any(|n| n == a)));
        }
        Err(refused) => {
            assert!(asked.contains(&refused.as_str()) && !scope::granted(&refused, &held));
        }
    }
}
