//! Header hygiene on the way to the upstream and back: hop-by-hop removal (upgrades kept),
//! the identity headers Warden sets and strips, `X-Forwarded-*`, and the method-override and
//! proxy-claim headers a client must not smuggle past the gates.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::Origin;
use crate::cache::Identity;

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the
/// non-standard ones proxies have used for the same purpose. (`Upgrade` is one too, but kept
/// on an upgrade: see [`strip_hop_by_hop`].)
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_WARDEN_CLIENT_ID: HeaderName = HeaderName::from_static("x-warden-client-id");
const X_WARDEN_TOKEN_ID: HeaderName = HeaderName::from_static("x-warden-token-id");
const X_WARDEN_SCOPES: HeaderName = HeaderName::from_static("x-warden-scopes");
const X_WARDEN_AUDIENCE: HeaderName = HeaderName::from_static("x-warden-audience");
/// The codes of the checks that failed in report mode (`[routes.checks]`).
pub(super) const X_WARDEN_WOULD_DENY: HeaderName = HeaderName::from_static("x-warden-would-deny");
/// Identity headers are Warden's to set; whatever a client sends under this prefix is dropped.
pub const IDENTITY_PREFIX: &str = "x-warden-";

/// Fields that make an upstream route the request to another path than its target (IIS,
/// Zend/Laminas, old Symfony). Warden routed by the target, so they are dropped from every
/// peer, trusted or not.
const ROUTING_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

/// What a proxy says about the client or the URL it used, beyond `X-Forwarded-For/-Proto/-Host`
/// (which [`set_forwarded`] handles) and `Forwarded`. From an untrusted peer they are lies
/// and are dropped; from a trusted proxy they pass as the proxy sent them. Any `x-forwarded-*`,
/// `x-ssl-*` and `cf-connecting-*` field counts as well.
const PROXY_CLAIMS: [&str; 20] = [
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-forwarded-for",
    "x-forwarded",
    "forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-original-host",
    "x-host",
    "x-original-uri",
    "x-client-cert",
    "ssl-client-cert",
    "x-arr-clientcert",
    "front-end-https",
    "x-url-scheme",
];

/// Whether `name` (lower case, with dashes) is a proxy's claim about the connection.
fn is_proxy_claim(name: &str) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("x-ssl-")
        || name.starts_with("cf-connecting-")
        || PROXY_CLAIMS.contains(&name)
}

/// Request fields Warden reads to decide, beyond the identity and proxy fields: their
/// underscore spellings are dropped, and `Connection` cannot remove them.
const CHECKED: [&str; 7] = [
    "authorization",
    "x-client-id",
    "signature",
    "signature-input",
    "content-digest",
    "idempotency-key",
    "x-idempotency-key",
];

/// Headers with which Express's `method-override`, ASP.NET, Symfony, Rails and others make a
/// POST run as another method.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-method-override",
    "x-http-method",
];

/// `name` as CGI and WSGI servers read it: `_` and `-` are the same (`HTTP_X_WARDEN_SCOPES`).
fn dash_spelling(name: &str) -> std::borrow::Cow<'_, str> {
    if name.contains('_') {
        std::borrow::Cow::Owned(name.replace('_', "-"))
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// The method-override header or query parameter a request carries, if any, named as sent:
/// `X-HTTP-Method-Override`, `X-Method-Override` or `X-HTTP-Method` in any spelling
/// (underscores too), or a `_method` query parameter as PHP reads names (`.` and spaces
/// become `_`). Upstreams that honour one would run another method than Warden routed.
pub fn method_override(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    for name in headers.keys() {
        let name = name.as_str();
        if name.contains("method") && METHOD_OVERRIDES.contains(&&*dash_spelling(name)) {
            return Some(name.to_owned());
        }
    }
    let query = query?;
    if !query.to_ascii_lowercase().contains("method") {
        return None;
    }
    form_urlencoded::parse(query.as_bytes())
        .any(|(key, _)| {
            let key: String = key
                .trim_start()
                .chars()
                .map(|c| match c {
                    ' ' | '.' | '[' => '_',
                    c => c.to_ascii_lowercase(),
                })
                .collect();
            key == "_method"
        })
        .then(|| "the _method query parameter".to_owned())
}

/// Whether a request asks to switch protocols (WebSocket and friends, HTTP/1.1 only).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| connection_tokens(v).any(|t| t.eq_ignore_ascii_case("upgrade")))
}

fn connection_tokens(v: &HeaderValue) -> impl Iterator<Item = &str> {
    v.to_str()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers and those the `Connection` header names, except fields that
/// must reach the upstream as Warden saw them: a field a signature on the message covers
/// (`Signature-Input`), one Warden reads to decide (`CHECKED`) or sets (`X-Warden-*`,
/// `X-Forwarded-*`, `Forwarded`). Otherwise `Connection: x-dry-run` would strip a signed
/// field after its signature was verified. When `keep_upgrade` is set, the `Upgrade` header
/// survives and `Connection: upgrade` is restored.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none of these, and removing an absent name still costs a hash
    // lookup each: one pass over the names present decides whether there is anything to do.
    let any = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !any {
        if keep_upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(connection_tokens)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let mut signed: Option<Covered> = None;
    for name in named {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        if HOP_BY_HOP.contains(&name) || !headers.contains_key(&name) {
            continue; // removed below, or absent
        }
        let end_to_end = name.as_str().starts_with(IDENTITY_PREFIX)
            || name.as_str().starts_with("x-forwarded-")
            || name == header::FORWARDED
            || CHECKED.contains(&name.as_str());
        if end_to_end
            || signed
                .get_or_insert_with(|| Covered::of(headers))
                .covers(&name)
        {
            continue;
        }
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The fields the signatures on a message cover, as far as `Connection` is concerned.
enum Covered {
    Names(Vec<String>),
    /// `Signature-Input` is there but unreadable: nothing named may go.
    All,
}

impl Covered {
    fn of(headers: &HeaderMap) -> Self {
        if !headers.contains_key("signature-input") {
            return Covered::Names(Vec::new());
        }
        match crate::httpsig::parse_signatures(headers) {
            Ok(sigs) => Covered::Names(
                sigs.iter()
                    .flat_map(|s| s.components().iter().map(|c| c.name().to_owned()))
                    .collect(),
            ),
            Err(_) => Covered::All,
        }
    }

    fn covers(&self, name: &HeaderName) -> bool {
        match self {
            Covered::Names(names) => names.iter().any(|n| n == name.as_str()),
            Covered::All => true,
        }
    }
}

/// Removes what a client may not say to the upstream, whoever the peer: every `X-Warden-*`
/// header, also spelled with underscores (`X_Warden_Client_Id`, which CGI and WSGI servers
/// read as `X-Warden-Client-Id`); the underscore spellings of every field Warden sets or
/// checks (`X_Forwarded_For`, `X_Client_Id`, …); and `X-Original-URL` / `X-Rewrite-URL`.
pub fn strip_identity(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let name = k.as_str();
            // Most names pass the first test; only underscores need a copy.
            if !name.starts_with("x") && !name.contains('_') {
                return false;
            }
            let dashed = dash_spelling(name);
            let dashed = dashed.as_ref();
            dashed.starts_with(IDENTITY_PREFIX)
                || ROUTING_OVERRIDES.contains(&dashed)
                || (name.contains('_')
                    && (is_proxy_claim(dashed)
                        || CHECKED.contains(&dashed)
                        || METHOD_OVERRIDES.contains(&dashed)))
        })
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Adds the identity headers of an authenticated request (after [`strip_identity`]).
pub fn set_identity(headers: &mut HeaderMap, id: &Identity) {
    headers.insert(X_WARDEN_CLIENT_ID, id.client_id_header.clone());
    headers.insert(X_WARDEN_TOKEN_ID, id.token_id_header.clone());
    headers.insert(X_WARDEN_SCOPES, id.scopes_header.clone());
    if let Some(aud) = &id.audience_header {
        headers.insert(X_WARDEN_AUDIENCE, aud.clone());
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`. What a peer says is kept only if the peer is trusted;
/// otherwise the values are Warden's own view of the connection.
pub fn set_forwarded(headers: &mut HeaderMap, origin: &Origin, authority: Option<HeaderValue>) {
    let prior: Vec<&str> = if origin.peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let xff = if prior.is_empty() {
        ip_header(origin.peer)
    } else {
        HeaderValue::from_str(&format!("{}, {}", prior.join(", "), origin.peer)).ok()
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(origin.peer_trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if origin.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(origin.peer_trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match authority {
            Some(v) => {
                headers.insert(X_FORWARDED_HOST, v);
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
    if !origin.peer_trusted {
        // RFC 7239's Forwarded carries the same claims; from an untrusted peer it is a lie,
        // and so are X-Real-IP, X-Forwarded-Port/-Prefix and the others.
        headers.remove(header::FORWARDED);
        let claims: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                *k != X_FORWARDED_FOR
                    && *k != X_FORWARDED_PROTO
                    && *k != X_FORWARDED_HOST
                    && is_proxy_claim(k.as_str())
            })
            .cloned()
            .collect();
        for name in claims {
            headers.remove(name);
        }
    }
}

/// `ip` as a header value. IPv4 is written by hand: `Display` goes through the formatting
/// machinery and cost more than the rest of `set_forwarded` together.
pub(super) fn ip_header(ip: IpAddr) -> Option<HeaderValue> {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).ok();
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    HeaderValue::from_bytes(&buf[..len]).ok()
}
