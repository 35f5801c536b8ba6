//! Property tests over the fuzz entry points, 10,000 cases each. Inputs are mostly near-valid:
//! a well-formed field, path or body built from the grammar, then zero to three edits (a byte
//! or token inserted, a range dropped or repeated into a long input, a cut); the rest are raw
//! bytes and arbitrary Unicode.
//!
//! Cost: 22 s of CPU in a debug build for all of them together, measured on the 2-core
//! machine with `/usr/bin/time cargo test --lib fuzzing::` (39 s wall there, under a load of 5;
//! about half of the CPU figure on an idle machine, as the tests run on both cores).

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;

/// Every property runs 10,000 cases (the default is 256).
const CASES: u32 = 10_000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ edits

/// Tokens that tend to matter to the parsers here: delimiters, escapes, encodings of `.` and
/// `/`, numbers at the edges, non-ASCII.
const NOISE: &[&str] = &[
    "\"",
    "\\",
    ",",
    ";",
    "=",
    ":",
    "(",
    ")",
    " ",
    "\t",
    "%",
    "%2e",
    "%2E",
    "%2f",
    "%5C",
    "%00",
    "%zz",
    "%C3%A9",
    "..",
    ".",
    "/",
    "//",
    "?",
    "#",
    "*",
    "**",
    "+",
    "&",
    "@",
    "{",
    "}",
    "[",
    "]",
    "\0",
    "\x7f",
    "\u{80}",
    "é",
    "\u{202e}",
    "\u{feff}",
    "\u{10ffff}",
    "\r",
    "\n",
    "-1",
    "1.5",
    "?1",
    "?0",
    "9223372036854775808",
    "999999999999999",
    "1000000000000000",
    "null",
    "true",
    "[]",
    "{}",
    "\\u0000",
    "\\ud800",
    "\\u0061",
    "=:AA==:",
    "::",
    "::ffff:",
    "..;",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Replace(usize, u8),
    /// Repeats a range many times: long inputs.
    Repeat(usize, usize, usize),
    Truncate(usize),
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => select(NOISE).prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => any::<char>().prop_map(|c| c.to_string().into_bytes()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), noise()).prop_map(|(i, b)| Edit::Insert(i, b)),
        2 => (any::<usize>(), 1..8usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        1 => (any::<usize>(), 1..24usize, 2..200usize).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: usize| i % (bytes.len() + 1);
        match e {
            Edit::Insert(i, b) => {
                let i = at(*i);
                bytes.splice(i..i, b.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Edit::Replace(i, b) => {
                if !bytes.is_empty() {
                    let i = *i % bytes.len();
                    bytes[i] = *b;
                }
            }
            Edit::Repeat(i, n, k) => {
                let i = at(*i);
                let end = (i + n).min(bytes.len());
                let part = bytes[i..end].to_vec();
                for _ in 0..*k {
                    bytes.splice(end..end, part.iter().copied());
                }
            }
            Edit::Truncate(i) => bytes.truncate(at(*i)),
        }
    }
    bytes
}

/// Input bytes, shown escaped when a property fails.
#[derive(Clone)]
struct Input(Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Input {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A valid input with up to three edits: two in five are left as they are.
fn near(valid: impl Strategy<Value = String>) -> impl Strategy<Value = Input> {
    let edits = prop_oneof![2 => Just(Vec::new()), 3 => vec(edit(), 1..4)];
    (valid, edits).prop_map(|(s, edits)| Input(apply(s.into_bytes(), &edits)))
}

/// Mostly near-valid inputs, some raw bytes, some arbitrary Unicode.
fn mixed(valid: impl Strategy<Value = String>) -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => near(valid),
        1 => vec(any::<u8>(), 0..256).prop_map(Input),
        1 => vec(any::<char>(), 0..64).prop_map(|c| Input(String::from_iter(c).into_bytes())),
    ]
}

/// Short text of any characters, delimiters and non-ASCII often (cheaper than a regex).
fn text() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        2 => select(&[':', '%', '+', '&', '=', ' ', 'é', '\u{0}', '\u{10ffff}'][..]),
        3 => any::<char>(),
    ];
    vec(c, 0..16).prop_map(String::from_iter)
}

/// An sf-string (RFC 9651 §3.3.3) holding `s`'s printable ASCII, escaped.
fn sf_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

// ------------------------------------------------------------------ signatures

/// Components a request signature may cover.
const COMPONENTS: &[&str] = &[
    "\"@method\"",
    "\"@target-uri\"",
    "\"@authority\"",
    "\"@scheme\"",
    "\"@request-target\"",
    "\"@path\"",
    "\"@query\"",
    "\"@query-param\";name=\"a\"",
    "\"@query-param\";name=\"name\"",
    "\"@query-param\";name=\"b\"",
    "\"content-digest\"",
    "\"content-digest\";sf",
    "\"example-dict\";key=\"a\"",
    "\"example-dict\";key=\"b\"",
    "\"example-dict\";key=\"c\";sf",
    "\"example-dict\";sf",
    "\"example-dict\"",
    "\"accept-ch\";sf",
    "\"cache-status\";sf",
    "\"idempotency-key\";sf",
    "\"x\";bs",
    "\"x\"",
    "\"content-type\"",
    "\"authorization\"",
];

/// Components a request signature may not cover, and items that are no components.
const BAD_COMPONENTS: &[&str] = &[
    "\"@query-param\"",
    "\"@status\"",
    "\"@signature-params\"",
    "\"@method\";sf",
    "\"x\";bs;sf",
    "\"x\";sf",
    "\"x\";req",
    "\"x\";tr",
    "\"x\";sf=?0",
    "\"x\";key=1",
    "\"X\"",
    "\"\"",
    "\"a b\"",
    "token",
    "1",
];

/// Signature parameters, mostly of the wrong type or unknown.
const SIG_PARAMS: &[&str] = &[
    ";alg=\"rsa-pss-sha512\"",
    ";created=1.5",
    ";created",
    ";created=-1",
    ";expires=-1",
    ";x=1",
    ";keyid=k",
    ";nonce=:AAAA:",
    ";created=999999999999999",
    ";tag=\"\"",
];

fn sf_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(&["sig1", "sig2", "sig-b26", "*", "a.b_c-d"][..]).prop_map(String::from),
        1 => "[a-z*][a-z0-9_.*-]{0,7}",
    ]
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        16 => select(COMPONENTS).prop_map(String::from),
        1 => select(BAD_COMPONENTS).prop_map(String::from),
        1 => r#""@?[a-z-]{0,12}"(;(sf|bs|key="[a-z]{1,3}"|name="[a-zA-Z%0-9]{0,4}"|[a-z]{1,3}))?"#,
    ]
}

fn sig_param() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (select(&["created", "expires"][..]), 0..4_000_000_000i64)
            .prop_map(|(n, v)| format!(";{n}={v}")),
        4 => (select(&["keyid", "nonce", "tag"][..]), "[ -~]{0,12}")
            .prop_map(|(n, v)| format!(";{n}={}", sf_string(&v))),
        1 => Just(";alg=\"ed25519\"".to_owned()),
        1 => select(SIG_PARAMS).prop_map(String::from),
    ]
}

/// One `Signature-Input` member and its `Signature` member.
fn signature_member() -> impl Strategy<Value = (String, String)> {
    (
        sf_key(),
        vec(component(), 0..5),
        vec(sig_param(), 0..4),
        vec(any::<u8>(), 0..72),
        select(&["", " "][..]),
    )
        .prop_map(|(label, components, params, bytes, space)| {
            (
                format!("{label}=({}){}", components.join(space), params.concat()),
                format!("{label}=:{}:", STANDARD.encode(bytes)),
            )
        })
}

/// Request targets, with and without a query, and not in origin form.
const REQUEST_TARGETS: &[&str] = &[
    "/",
    "",
    "/p?a=1&b=%zz&name",
    "/foo/bar?x=%20y&x=2",
    "/p?a+b=c%2Bd&%61=1",
    "*",
    "http://h.example/p?q",
    "/é?ü=1",
    "/p?",
];

const AUTHORITIES: &[&str] = &["api.example", "API.Example:443", "[::1]:80", "h:", "é", ""];

/// Fields a base may cover: dictionaries, lists, items, and values that are none of them.
const HEADER_LINES: &[&str] = &[
    "example-dict: a=1, b, c=(1 2);x",
    "example-dict: a=1,    b=2;x=1;y=2, c=(a   b    c), d",
    "example-dict: bad((",
    "content-digest: sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
    "x: y",
    "x:  spaced  \t",
    "x: caf\u{e9}",
    "content-type: text/plain",
    "accept-ch: a, b",
    "cache-status: x;hit",
    "idempotency-key: \"k-1\"",
    "idempotency-key: k1",
    "authorization: Bearer t",
    "priority: u=1, i",
];

fn signature_input() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            3 => vec(signature_member(), 1..2),
            1 => vec(signature_member(), 2..4),
        ],
        select(&[", ", ",", " , ", ",\t"][..]),
        any::<bool>(),
        select(REQUEST_TARGETS),
        select(AUTHORITIES),
        vec(select(HEADER_LINES), 0..6),
    )
        .prop_map(|(members, sep, reversed, target, authority, headers)| {
            let (inputs, mut signatures): (Vec<_>, Vec<_>) = members.into_iter().unzip();
            if reversed {
                signatures.reverse();
            }
            format!(
                "{}\n{}\n{target}\n{authority}\n{}",
                inputs.join(sep),
                signatures.join(sep),
                headers.join("\n")
            )
        })
}

// ------------------------------------------------------------------ content digest

/// What a `Content-Digest` member holds.
#[derive(Debug, Clone, Copy)]
enum DigestValue {
    /// The digest of the body, so that verification passes.
    Right,
    /// Bytes of the algorithm's length.
    Other,
    /// Bytes of any length.
    AnyLength,
    InnerList,
    NotBytes(&'static str),
}

fn digest_input() -> impl Strategy<Value = String> {
    let algorithm = prop_oneof![
        4 => select(&["sha-256", "sha-512"][..]),
        1 => select(&["md5", "sha", "unixsum", "id-sha-256", "SHA-256"][..]),
    ];
    let value = prop_oneof![
        6 => Just(DigestValue::Right),
        1 => Just(DigestValue::Other),
        1 => Just(DigestValue::AnyLength),
        1 => Just(DigestValue::InnerList),
        1 => select(&["1", "\"text\"", "token", "?1", "1.5"][..]).prop_map(DigestValue::NotBytes),
    ];
    let member = (
        algorithm,
        value,
        vec(any::<u8>(), 0..70),
        select(&["", "", ";a=1", ";q"][..]),
    );
    (vec(member, 1..4), "[a-z0-9 {}\"]{0,24}").prop_map(|(members, body)| {
        let value: Vec<String> = members
            .into_iter()
            .map(|(name, value, bytes, params)| {
                let len = crate::digest::Algorithm::from_name(name).map_or(32, |a| a.output_len());
                let value = match value {
                    DigestValue::Right => match crate::digest::Algorithm::from_name(name) {
                        Some(a) => format!(":{}:", STANDARD.encode(a.digest(body.as_bytes()))),
                        None => format!(":{}:", STANDARD.encode(&bytes)),
                    },
                    DigestValue::Other => {
                        format!(
                            ":{}:",
                            STANDARD
                                .encode(bytes.repeat(len).get(..len).unwrap_or(&[0; 64][..len]))
                        )
                    }
                    DigestValue::AnyLength => format!(":{}:", STANDARD.encode(&bytes)),
                    DigestValue::InnerList => "(:AA==:)".to_owned(),
                    DigestValue::NotBytes(v) => v.to_owned(),
                };
                format!("{name}={value}{params}")
            })
            .collect();
        format!("{}\n{body}", value.join(", "))
    })
}

// ------------------------------------------------------------------ paths

/// Path segments routes use, which upstreams read alike.
const SEGMENTS: &[&str] = &[
    "a",
    "b",
    "v1",
    "orders",
    "42",
    "admin",
    "public",
    "files",
    "x.y",
    "...",
    "..a",
    "%41",
    "é",
    "%C3%A9",
    "~",
    "ws",
    "accounts",
    "acme",
    "credentials",
    "tokens",
    "mt_0123456789abcdef0123456789abcdef",
    "enable",
    "healthz",
    "oauth",
    "token",
];

/// Segments that could read differently upstream, or are no segments.
const BAD_SEGMENTS: &[&str] = &[
    "..", ".", "%2e", "%2E%2e", ".%2e", "%2e.", "..;", ".;x", "a;b", "%2f", "%2F", "%5c", "%00",
    "", "%61dmin", "ADMIN", "%", "%zz", "%2", "*", "{id}",
];

fn request_target() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            6 => Just("/"),
            1 => select(&["", "//", "\\", "http://h.example/", "/%2e/"][..]),
        ],
        vec(
            prop_oneof![6 => select(SEGMENTS), 1 => select(BAD_SEGMENTS)],
            0..7,
        ),
        select(&["", "/"][..]),
        select(&["", "?x=1", "?a=/../b", "#f", "?"][..]),
    )
        .prop_map(|(start, segments, end, query)| {
            format!("{start}{}{end}{query}", segments.join("/"))
        })
}

// ------------------------------------------------------------------ Authorization

const SCHEMES: &[&str] = &["bearer", "BEARER", "basic", "Digest", "Bearer2", ""];

fn authorization_input() -> impl Strategy<Value = String> {
    let credential = prop_oneof![
        "[A-Za-z0-9._~+/-]{1,40}={0,2}",
        "wdn_at_[A-Za-z0-9_-]{43}",
        (text(), text(), any::<bool>()).prop_map(|(id, secret, encode)| {
            let pair = if encode {
                let e = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                format!("{}:{}", e(&id), e(&secret))
            } else {
                format!("{id}:{secret}")
            };
            STANDARD.encode(pair)
        }),
        "[ -~]{0,20}",
    ];
    let line = (
        prop_oneof![4 => select(&["Bearer", "Basic"][..]), 1 => select(SCHEMES)],
        prop_oneof![4 => Just(" "), 1 => select(&["  ", "\t", "", " \t "][..])],
        credential,
        select(&["", "", "", " ", "  "][..]),
    )
        .prop_map(|(scheme, sep, credential, tail)| format!("{scheme}{sep}{credential}{tail}"));
    prop_oneof![
        4 => line.clone(),
        1 => vec(line, 0..3).prop_map(|lines| lines.join("\n")),
    ]
}

// ------------------------------------------------------------------ idempotency keys

fn idempotency_input() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        "[!-~]{1,40}",
        "[ -~]{0,40}".prop_map(|s| sf_string(&s)),
        "[a-z0-9-]{250,260}",
        "[a-z0-9-]{250,260}".prop_map(|s| sf_string(&s)),
        "\"[a-z]{1,8}\";a=1",
        "\"[a-z]{1,8}\" ",
        " [a-z]{1,8}",
        "\"[a-z]{1,8}\", \"[a-z]{1,8}\"",
        "[a-z]{1,8}[\u{80}-\u{ff}]",
    ];
    prop_oneof![
        4 => key.clone(),
        1 => vec(key, 0..4).prop_map(|keys| keys.join("\n")),
    ]
}

// ------------------------------------------------------------------ form and JSON bodies

const FORM_NAMES: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "a",
    "a ",
    "%61",
    "+",
    "",
    "é",
    "token",
];

fn form_input() -> impl Strategy<Value = String> {
    let pair = (
        select(FORM_NAMES),
        prop_oneof![Just(String::new()), "[ -~]{0,12}", text()],
        any::<bool>(),
        select(&["=", "=", "", "=="][..]),
    )
        .prop_map(|(name, value, encode, eq)| {
            if encode {
                let e = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                format!("{}{eq}{}", e(name), e(&value))
            } else {
                format!("{name}{eq}{value}")
            }
        });
    (vec(pair, 0..6), select(&["&", "&", "&&", ";"][..])).prop_map(|(pairs, sep)| pairs.join(sep))
}

/// Keys, some of which are the same key escaped differently.
const JSON_KEYS: &[&str] = &[
    "grant_type",
    "client_id",
    "scope",
    "a",
    "a b",
    "\\u0061",
    "a\\u0020b",
    "\\\"",
    "é",
    "",
    "duplicate parameter x",
    "x at line 1",
];

const JSON_VALUES: &[&str] = &[
    "\"x\"",
    "\"x\"",
    "\"\"",
    "\"a\\u0000b\"",
    "1",
    "-0",
    "1.0",
    "12345678901234567890",
    "true",
    "null",
];

/// Values no parameter may have, and an unpaired surrogate.
const BAD_JSON_VALUES: &[&str] = &["\"\\ud800\"", "1e400", "[]", "{}", "[\"a\"]", "{\"b\":1}"];

fn json_input() -> impl Strategy<Value = String> {
    let member = (
        select(JSON_KEYS),
        prop_oneof![6 => select(JSON_VALUES), 1 => select(BAD_JSON_VALUES)],
        select(&[":", ":", " : "][..]),
    )
        .prop_map(|(k, v, colon)| format!("\"{k}\"{colon}{v}"));
    prop_oneof![
        6 => (vec(member, 0..5), select(&[",", ", ", " ,"][..]))
            .prop_map(|(members, sep)| format!("{{{}}}", members.join(sep))),
        1 => select(JSON_VALUES).prop_map(String::from),
    ]
}

fn token_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._-]{1,12}",
        1 => "[ -~é\u{7f}\u{85}\u{2028}]{0,12}",
        1 => "[a-z]{120,140}",
    ]
}

/// A scope: most of them held by the grantors of [`token_body`].
fn token_scope() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(&["read", "table://my.x", "table://my.a.b", "t://a.b/b", "t://a.x/b"][..])
            .prop_map(String::from),
        1 => select(&["admin", "table://**", "t://a.b.c/b", "table://my.*.y", "x y", "", "a\"b"][..])
            .prop_map(String::from),
        1 => "table://my\\.[a-z0-9]{1,3}",
    ]
}

fn token_body_input() -> impl Strategy<Value = String> {
    fn json(s: String) -> String {
        serde_json::Value::from(s).to_string()
    }
    let scopes = prop_oneof![
        4 => vec(token_scope(), 1..4).prop_map(|s| json(s.join(" "))),
        4 => vec(token_scope(), 0..5).prop_map(|s| serde_json::Value::from(s).to_string()),
        1 => vec(token_scope(), 60..70).prop_map(|s| serde_json::Value::from(s).to_string()),
        1 => select(&["[\"read\", 1]", "1", "null", "\"  \""][..]).prop_map(String::from),
    ];
    let expiry = prop_oneof![
        4 => Just(None),
        1 => (
            select(&["expiresAt", "expiresIn"][..]),
            prop_oneof![
                3 => (1..4_000_000_000i64).prop_map(|n| n.to_string()),
                1 => select(&["0", "-1", "9223372036854775807", "-9223372036854775808",
                    "18446744073709551615", "1.5", "\"1\"", "null"][..]).prop_map(String::from),
            ],
        )
            .prop_map(|(k, v)| Some(format!("\"{k}\":{v}"))),
    ];
    let create = (
        token_text(),
        proptest::option::weighted(0.3, token_text()),
        proptest::option::weighted(0.3, select(&["orders", "a b", "", "billing"][..])),
        scopes,
        expiry,
        prop_oneof![8 => Just(None), 1 => select(&["\"x\":1", "\"name\":\"again\"", "\"reason\":\"r\""][..]).prop_map(Some)],
    )
        .prop_map(|(name, user, audience, scopes, expiry, extra)| {
            let mut fields = vec![
                format!("\"name\":{}", json(name)),
                format!("\"scopes\":{scopes}"),
            ];
            fields.extend(user.map(|u| format!("\"user\":{}", json(u))));
            fields.extend(audience.map(|a| format!("\"audience\":\"{a}\"")));
            fields.extend(expiry);
            fields.extend(extra.map(String::from));
            format!("{{{}}}", fields.join(","))
        });
    prop_oneof![
        8 => create,
        1 => token_text().prop_map(|r| format!("{{\"reason\":{}}}", json(r))),
        1 => select(&["", "{}", "[]", "null", "{\"name\":\"n\"}"][..]).prop_map(String::from),
    ]
}

// ------------------------------------------------------------------ X-Forwarded-For

/// One `X-Forwarded-For` element, and the address it names (`None` for garbage).
#[derive(Debug, Clone)]
enum Element {
    Address(IpAddr, String),
    Garbage(&'static str),
    Empty,
}

const GARBAGE: &[&str] = &[
    "bogus",
    "unknown",
    "1.2.3",
    "300.1.1.1",
    "[::1",
    "::1]:80",
    "1.2.3.4:x",
    "_hidden",
    "1.2.3.4 5",
    "[1.2.3.4]x",
    "2001:db8::1:80:",
];

fn element() -> impl Strategy<Value = Element> {
    let ip = select(
        &[
            "10.0.0.2",
            "10.9.8.7",
            "203.0.113.7",
            "198.51.100.1",
            "fd00::2",
            "2001:db8::1",
            "::ffff:10.0.0.5",
            "::ffff:203.0.113.5",
        ][..],
    )
    .prop_filter_map("parses", |s| s.parse::<IpAddr>().ok().map(|ip| (ip, s)));
    prop_oneof![
        6 => (ip, 0..3u8, select(&["", " ", "  "][..])).prop_map(|((ip, text), spelling, pad)| {
            let text = match (ip, spelling) {
                (IpAddr::V4(_), 1) => format!("{text}:8080"),
                (IpAddr::V6(_), 1) => format!("[{text}]"),
                (IpAddr::V6(_), 2) => format!("[{text}]:443"),
                _ => text.to_owned(),
            };
            Element::Address(ip, format!("{pad}{text}{pad}"))
        }),
        1 => select(GARBAGE).prop_map(Element::Garbage),
        1 => Just(Element::Empty),
    ]
}

/// The walk the module documents: right to left over all lines, trusted hops skipped, the
/// first untrusted address wins, garbage stops at the last trusted hop.
fn documented_client(peer: IpAddr, lines: &[Vec<Element>]) -> IpAddr {
    let trusted = |ip: IpAddr| TRUSTED.iter().any(|n| n.contains(&ip.to_canonical()));
    if !trusted(peer) {
        return peer.to_canonical();
    }
    let mut believed = peer.to_canonical();
    for element in lines.iter().rev().flat_map(|l| l.iter().rev()) {
        match element {
            Element::Empty => {}
            Element::Garbage(_) => return believed,
            Element::Address(ip, _) if !trusted(*ip) => return ip.to_canonical(),
            Element::Address(ip, _) => believed = ip.to_canonical(),
        }
    }
    believed
}

fn text_of(line: &[Element]) -> String {
    line.iter()
        .map(|e| match e {
            Element::Address(_, text) => text.clone(),
            Element::Garbage(g) => (*g).to_owned(),
            Element::Empty => " ".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ------------------------------------------------------------------ scopes

fn scope_like() -> impl Strategy<Value = String> {
    let segment = select(&["a", "b", "ab", "*", "**", "", "A", "a*", "my", "x"][..]);
    let separator = select(&[".", "/", "..", "./"][..]);
    prop_oneof![
        6 => (select(&["t", "T", "table", "1x", "", "a+b"][..]), vec((separator, segment), 1..6))
            .prop_map(|(scheme, parts)| {
                let mut s = format!("{scheme}://");
                for (i, (sep, seg)) in parts.into_iter().enumerate() {
                    if i > 0 {
                        s.push_str(sep);
                    }
                    s.push_str(seg);
                }
                s
            }),
        2 => select(&["read", "write", "admin", "*", "**", "a\"b", "a\\b", "é"][..]).prop_map(String::from),
        1 => "[!-~]{250,260}",
    ]
}

fn scopes_input() -> impl Strategy<Value = String> {
    (
        vec(scope_like(), 0..5),
        vec(scope_like(), 0..5),
        select(&[" ", "  "][..]),
    )
        .prop_map(|(held, wanted, sep)| format!("{}\n{}", held.join(sep), wanted.join(sep)))
}

// ------------------------------------------------------------------ the properties

proptest! {
    #![proptest_config(config())]

    #[test]
    fn signature_fields_round_trip_and_their_bases_are_well_formed(input in mixed(signature_input())) {
        signature(&input);
    }

    #[test]
    fn content_digest_members_round_trip_and_verify_like_a_plain_digest(input in mixed(digest_input())) {
        content_digest(&input);
    }

    #[test]
    fn accepted_paths_have_no_dot_segment_or_hidden_separator(input in mixed(request_target())) {
        path(&input);
    }

    #[test]
    fn authorization_yields_one_well_formed_credential(input in mixed(authorization_input())) {
        authorization(&input);
    }

    #[test]
    fn basic_credentials_read_back_what_was_encoded(id in text(), secret in text()) {
        prop_assert_eq!(basic_round_trip(&id, &secret), Ok(Some((id.clone(), secret.clone()))));
    }

    #[test]
    fn accepted_idempotency_keys_are_1_to_255_visible_ascii(input in mixed(idempotency_input())) {
        idempotency_key(&input);
    }

    #[test]
    fn form_parameters_round_trip_and_duplicates_are_named(input in mixed(form_input())) {
        form_body(&input);
    }

    #[test]
    fn json_parameters_round_trip_and_duplicates_are_named(input in mixed(json_input())) {
        json_body(&input);
    }

    #[test]
    fn token_api_bodies_vet_to_bounded_granted_specs(input in mixed(token_body_input())) {
        token_body(&input);
    }

    #[test]
    fn forwarded_for_never_lets_an_untrusted_peer_choose(selector in any::<u8>(), input in mixed(
        vec(vec(element(), 0..5).prop_map(|l| text_of(&l)), 0..3).prop_map(|l| l.join("\n"))
    )) {
        let mut data = vec![selector];
        data.extend_from_slice(&input);
        forwarded_for(&data);
    }

    #[test]
    fn forwarded_for_follows_the_documented_walk(
        peer in select(&["10.0.0.1", "203.0.113.9", "fd00::1", "::ffff:10.0.0.1"][..]),
        lines in vec(vec(element(), 0..5), 0..3),
    ) {
        let peer: IpAddr = peer.parse().unwrap();
        let mut headers = HeaderMap::new();
        for line in &lines {
            headers.append("x-forwarded-for", HeaderValue::from_str(&text_of(line)).unwrap());
        }
        prop_assert_eq!(
            client_ip::resolve(peer, &headers, &TRUSTED),
            documented_client(peer, &lines),
            "{:?}", headers
        );
    }

    #[test]
    fn scopes_grant_soundly_and_narrow_to_what_was_asked(input in mixed(scopes_input())) {
        scopes(&input);
    }

    #[test]
    fn the_dispatcher_never_panics(input in vec(any::<u8>(), 0..128).prop_map(Input)) {
        dispatch(&input);
    }
}

proptest! {
    #![proptest_config(config())]

    /// Finding 1 of the security review: `..;` is a dot-segment to upstreams that drop
    /// `;parameters` (Tomcat, Spring); the router refuses `;` in a path.
    #[test]
    fn accepted_paths_have_no_dot_segment_before_a_parameter(input in mixed(request_target())) {
        let Ok(uri) = Uri::try_from(&input[..]) else {
            return Ok(());
        };
        if crate::router::normalize_path(uri.path()).is_ok() {
            let stripped: Vec<String> = uri.path()
                .split('/')
                .map(|s| s.split(';').next().unwrap_or_default().to_owned())
                .collect();
            assert_unambiguous(&stripped.join("/"));
        }
    }
}

/// The fuzz seeds (`fuzz/corpus/<target>/`, from `tests/data/`) and any crash input saved
/// there as a regression pass their target: each is a plain test case here.
#[test]
fn the_fuzz_corpus_passes_every_target() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut failed = Vec::new();
    for (name, target) in TARGETS.iter().copied().chain([("all", dispatch as Target)]) {
        let files: Vec<_> = std::fs::read_dir(corpus.join(name))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "no seeds for {name}");
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(file);
            }
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}
