//! Routing against upstreams that read requests their own way: no spelling of a path, method
//! or header lets a request reach a handler under a weaker policy than the handler's route.
//! Also the request shapes refused before routing (path, method, Host) and the header hygiene
//! that keeps a client from speaking for Warden or a proxy.

use std::net::SocketAddr;

use base64::Engine as _;
use futures_util::StreamExt as _;
use http::{HeaderMap, Request};
use http_body_util::Full;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{Client, Config, PATIENCE, Proxy, RawConn, Upstream, assert_problem, within};
use crate::lenient::LenientUpstream;

/// The review's overlapping routes: a strict specific route, a looser one, and a public default.
fn routes(methods: &str) -> String {
    format!(
        r#"
[[routes]]
name = "admin"
path = "/api/admin/**"
auth = "bearer"
scopes = ["level://admin"]
{methods}
[[routes]]
name = "api"
path = "/api/**"
auth = "bearer"
{methods}
[[routes]]
name = "public"
path = "/**"
auth = "none"
"#
    )
}

fn client(id: &str, secret: &str, scopes: &str) -> String {
    format!(
        "[[clients]]\nid = {id:?}\nsecret_sha256 = \"{}\"\nscopes = {scopes}\n",
        hex::encode(warden::secret::hash(secret))
    )
}

async fn token(proxy: &Proxy, id: &str, secret: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let req = Request::post(proxy.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

/// Who sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Anonymous,
    /// A token with `read` only.
    Reader(String),
    /// A token with `read` and `level://admin`.
    Admin(String),
}

impl Who {
    fn authorization(&self) -> String {
        match self {
            Who::Anonymous => String::new(),
            Who::Reader(t) | Who::Admin(t) => format!("Authorization: Bearer {t}\r\n"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Who::Anonymous => "anonymous",
            Who::Reader(_) => "reader",
            Who::Admin(_) => "admin",
        }
    }
}

/// A Warden with the overlapping routes in front of the lenient upstream, and its tokens.
struct Setup {
    _up: LenientUpstream,
    proxy: Proxy,
    reader: Who,
    admin: Who,
}

impl Setup {
    async fn start(methods: &str) -> Self {
        let up = LenientUpstream::start().await;
        let config = Config::new(&up.url())
            .routes(&routes(methods))
            .append(&client("reader", "reader-secret-3Qx", r#"["read"]"#))
            .append(&client(
                "boss",
                "boss-secret-7Kw",
                r#"["read", "level://admin"]"#,
            ));
        let proxy = Proxy::start(config).await;
        let reader = Who::Reader(token(&proxy, "reader", "reader-secret-3Qx").await);
        let admin = Who::Admin(token(&proxy, "boss", "boss-secret-7Kw").await);
        Self {
            _up: up,
            proxy,
            reader,
            admin,
        }
    }
}

/// A response head, read from a connection Warden closes after it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method target` exactly as written, with `extra` header lines, and reads the head.
async fn send(addr: SocketAddr, method: &str, target: &str, who: &Who, extra: &str) -> Answer {
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: warden.test\r\nConnection: close\r\n{}{extra}\
         Content-Length: 0\r\n\r\n",
        who.authorization()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    // Warden may close with a reset after refusing; what was read is the answer.
    let _ = within(PATIENCE, "an answer", stream.read_to_end(&mut buf)).await;
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head for {method} {target}: {buf:?}"));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line for {method} {target}: {head}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if let (Ok(k), Ok(v)) = (
                http::HeaderName::from_bytes(k.trim().as_bytes()),
                http::HeaderValue::from_str(v.trim()),
            ) {
                headers.append(k, v);
            }
        }
    }
    Answer { status, headers }
}

/// The invariant: a handler runs only for a caller its route's policy admits, and the upstream
/// believes no identity but the caller's. Returns the handler that ran, if any.
fn judge(label: &str, who: &Who, answer: &Answer) -> Option<String> {
    let handler = answer.header("x-handler").map(str::to_owned);
    let scopes = answer.header("x-seen-scopes").unwrap_or("");
    let client = answer.header("x-seen-client").unwrap_or("");
    let context = || {
        format!(
            "{label} as {}: {} handler={handler:?} path={:?} method={:?} scopes={scopes:?}",
            who.name(),
            answer.status,
            answer.header("x-seen-path"),
            answer.header("x-seen-method"),
        )
    };
    match handler.as_deref() {
        Some("admin") => assert!(matches!(who, Who::Admin(_)), "{}", context()),
        Some("api") => assert!(!matches!(who, Who::Anonymous), "{}", context()),
        _ => {}
    }
    if scopes.contains("level://admin") {
        assert!(
            matches!(who, Who::Admin(_)),
            "spoofed scopes: {}",
            context()
        );
    }
    match who {
        Who::Anonymous => assert!(client.is_empty() && scopes.is_empty(), "{}", context()),
        Who::Reader(_) => assert!(client.is_empty() || client == "reader", "{}", context()),
        Who::Admin(_) => assert!(client.is_empty() || client == "boss", "{}", context()),
    }
    if handler.is_none() {
        // Not forwarded: Warden's own refusal, never a server error.
        assert!((400..500).contains(&answer.status), "{}", context());
    }
    handler
}

/// Spellings of one path segment that some upstream reads as `word`.
fn word_spellings(word: &str) -> Vec<String> {
    let enc = |b: u8| format!("%{b:02x}");
    let enc_up = |b: u8| format!("%{b:02X}");
    let bytes = word.as_bytes();
    let mut v = vec![
        word.to_owned(),
        word.to_ascii_uppercase(),
        format!("{}{}", word[..1].to_ascii_uppercase(), &word[1..]),
        bytes.iter().map(|&b| enc(b)).collect(),
        bytes.iter().map(|&b| enc_up(b)).collect(),
    ];
    for i in 0..bytes.len() {
        for e in [
            enc(bytes[i]),
            enc_up(bytes[i]),
            enc_up(bytes[i].to_ascii_uppercase()),
        ] {
            v.push(format!("{}{e}{}", &word[..i], &word[i + 1..]));
        }
    }
    let (first, rest) = (bytes[0], &word[1..]);
    for prefix in [
        format!("%25{first:02x}"),
        format!("%2525{first:02x}"),
        format!("%25%3{}%3{}", first >> 4, first & 0xf),
        format!("%u00{first:02x}"),
        format!("%C{}%{:02X}", first >> 6, 0x80 | (first & 0x3f)),
        "%EF%BD%81".to_owned(), // fullwidth a (NFKC reads it as a)
    ] {
        v.push(format!("{prefix}{rest}"));
    }
    for suffix in [
        ".",
        "%2e",
        "%2E",
        "..",
        " ",
        "%20",
        "%09",
        "%00",
        "%0a",
        "%0d%0a",
        ";",
        ";x=1",
        ";jsessionid=1",
        "%3b",
        "%3Bx",
        "%3F",
        "%23",
        "%2f",
        "%2F..",
        "%5c",
        "\\",
        "%C0%AE",
        "~",
        "%7e",
        "/",
        "%C2%A0",
    ] {
        v.push(format!("{word}{suffix}"));
    }
    v.push(format!("%20{word}"));
    v.push(format!(";x{word}"));
    if let Some(i) = word.find('i') {
        // ı and İ fold to i in case-insensitive comparisons.
        for dotless in ["%C4%B1", "%c4%b1", "\u{131}", "%C4%B0"] {
            v.push(format!("{}{dotless}{}", &word[..i], &word[i + 1..]));
        }
    }
    v
}

const PREFIXES: [&str; 16] = [
    "",
    "/public/..",
    "/public/..;",
    "/public/..;x=1",
    "/public/%2e%2e",
    "/public/%2E%2E",
    "/public/.%2e",
    "/public/%252e%252e",
    "/public/%C0%AE%C0%AE",
    "/public/..%2f",
    "/public/..%5c",
    "/public/..\\",
    "/.",
    "/./.",
    "/",
    "/public;/..",
];

const SUFFIXES: [&str; 19] = [
    ".json",
    ".JSON/",
    "%2ejson",
    "/users.json",
    ".json?x=1",
    "/users",
    "/users/",
    "",
    "/",
    "/users/.",
    "/users/..",
    "/x/../users",
    "/users;x",
    "/users%2f..",
    "/users?a=1",
    "/users?_method=GET",
    "/users#f",
    "/users%3Fx",
    "/%2e",
];

/// Every spelling of `/api/admin/users` the test tries: each segment's spellings, each prefix
/// and suffix, and 400 seeded random mixtures of all of them.
fn spellings() -> Vec<String> {
    let api = word_spellings("api");
    let admin = word_spellings("admin");
    let mut all = Vec::new();
    for a in &admin {
        all.push(format!("/api/{a}/users"));
    }
    for a in &api {
        all.push(format!("/{a}/admin/users"));
    }
    for p in PREFIXES {
        all.push(format!("{p}/api/admin/users"));
    }
    for s in SUFFIXES {
        all.push(format!("/api/admin{s}"));
    }
    all.push("http://warden.test/api/%61dmin/users".to_owned());
    all.push("http://warden.test/API/admin/users".to_owned());
    all.push("/api/admin/users/".to_owned());
    all.push("/api/admin".to_owned());
    all.push("/api/ADMIN".to_owned());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_2024);
    for _ in 0..400 {
        let p = PREFIXES[rng.gen_range(0..PREFIXES.len())];
        let a = &api[rng.gen_range(0..api.len())];
        let d = &admin[rng.gen_range(0..admin.len())];
        let s = SUFFIXES[rng.gen_range(0..SUFFIXES.len())];
        all.push(format!("{p}/{a}/{d}{s}"));
    }
    all
}

/// Sends every `(method, target, extra)` as each caller, 16 at a time, judging each answer;
/// returns how often each handler ran.
async fn sweep(
    setup: &Setup,
    requests: Vec<(String, String, String)>,
    callers: &[Who],
) -> std::collections::BTreeMap<String, usize> {
    let addr = setup.proxy.addr();
    let jobs: Vec<_> = requests
        .into_iter()
        .flat_map(|r| callers.iter().map(move |w| (r.clone(), w.clone())))
        .collect();
    let answers: Vec<_> = futures_util::stream::iter(jobs)
        .map(|((method, target, extra), who)| async move {
            let answer = send(addr, &method, &target, &who, &extra).await;
            (format!("{method} {target} [{}]", extra.trim()), who, answer)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut ran = std::collections::BTreeMap::new();
    for (label, who, answer) in &answers {
        let handler = judge(label, who, answer).unwrap_or_else(|| "-".into());
        // ROUTING_SWEEP_SHOW=1 lists every answer, to see what reached which handler.
        if std::env::var_os("ROUTING_SWEEP_SHOW").is_some() {
            eprintln!(
                "{} {label} as {} -> {handler} {:?}",
                answer.status,
                who.name(),
                answer.header("x-seen-path")
            );
        }
        *ran.entry(handler).or_insert(0) += 1;
    }
    ran
}

#[tokio::test]
async fn no_spelling_of_a_protected_path_reaches_its_handler_without_the_policy() {
    let setup = Setup::start("").await;
    // Paths the looser routes serve, so that the sweep is seen to reach them.
    let controls = [
        "/api/users",
        "/api/%75sers",
        "/API/users/",
        "/public/x",
        "/%70ublic/x",
    ];
    let requests: Vec<_> = spellings()
        .into_iter()
        .chain(controls.iter().map(|c| c.to_string()))
        .map(|t| ("GET".to_owned(), t, String::new()))
        .collect();
    let total = requests.len();
    let ran = sweep(&setup, requests, &[Who::Anonymous, setup.reader.clone()]).await;
    // The sweep did reach the upstream, through every route but the one it may not.
    assert!(ran.get("api").copied().unwrap_or(0) >= 3, "{ran:?}");
    assert!(ran.get("public").copied().unwrap_or(0) >= 4, "{ran:?}");
    assert!(!ran.contains_key("admin"), "{ran:?}");
    eprintln!("{total} spellings x 2 callers: {ran:?}");
}

#[tokio::test]
async fn no_method_spelling_or_override_reaches_a_handler_without_the_policy() {
    // Routes listing methods, as in the review: HEAD used to fall through to the public route.
    for methods in ["", "methods = [\"GET\", \"POST\"]"] {
        let setup = Setup::start(methods).await;
        let mut requests = Vec::new();
        for target in ["/api/admin/users", "/api/%61dmin/users", "/API/admin/users"] {
            for method in [
                "GET", "HEAD", "get", "head", "Get", "hEAD", "POST", "post", "OPTIONS", "PUT",
                "DELETE", "PATCH", "FOO", "TRACE",
            ] {
                requests.push((method.to_owned(), target.to_owned(), String::new()));
            }
            for header in [
                "X-HTTP-Method-Override",
                "x-http-method-override",
                "X-Method-Override",
                "X-HTTP-Method",
                "X_HTTP_Method_Override",
                "X_Method_Override",
                "x_http_method",
                "X-Http_Method-Override",
            ] {
                for (method, value) in [("POST", "GET"), ("POST", "get"), ("PUT", "GET")] {
                    let extra = format!("{header}: {value}\r\n");
                    requests.push((method.to_owned(), target.to_owned(), extra));
                }
            }
            for query in [
                "_method=GET",
                "_METHOD=get",
                "%5Fmethod=GET",
                ".method=GET",
                "+_method=GET",
                "a=1&_method=GET",
                "_method[=GET",
            ] {
                requests.push((
                    "POST".to_owned(),
                    format!("{target}?{query}"),
                    String::new(),
                ));
            }
        }
        for spoof in [
            "X_Warden_Scopes: level://admin\r\n",
            "X-Warden-Scopes: level://admin\r\n",
            "x-warden_scopes: level://admin\r\nX_WARDEN_CLIENT_ID: boss\r\n",
            "X-Original-URL: /api/admin/users\r\n",
            "X_Rewrite_URL: /api/admin/users\r\n",
        ] {
            for target in ["/public/x", "/api/users"] {
                requests.push(("GET".to_owned(), target.to_owned(), spoof.to_owned()));
            }
        }
        let ran = sweep(&setup, requests, &[Who::Anonymous, setup.reader.clone()]).await;
        assert!(!ran.contains_key("admin"), "{methods}: {ran:?}");
        eprintln!("{methods}: {ran:?}");
    }
}

#[tokio::test]
async fn the_admin_reaches_its_handler_in_any_accepted_spelling() {
    let setup = Setup::start("methods = [\"GET\", \"POST\"]").await;
    let addr = setup.proxy.addr();
    for (method, target) in [
        ("GET", "/api/admin/users"),
        ("GET", "/api/%61dmin/users"),
        ("GET", "/API/Admin/users"),
        ("GET", "/api/admin/users/"),
        ("HEAD", "/api/admin/users"),
        ("POST", "/api/admin/users"),
    ] {
        let answer = send(addr, method, target, &setup.admin, "").await;
        assert_eq!(
            judge(target, &setup.admin, &answer).as_deref(),
            Some("admin"),
            "{method} {target}: {answer:?}"
        );
    }
    // The upstream gets the normal form: unreserved escapes decoded, case kept.
    let answer = send(addr, "GET", "/api/%61dmin/%7eme%2a", &setup.admin, "").await;
    assert_eq!(answer.header("x-seen-raw-path"), Some("/api/admin/~me%2A"));
    let answer = send(addr, "GET", "/API/Admin/x", &setup.admin, "").await;
    assert_eq!(answer.header("x-seen-raw-path"), Some("/API/Admin/x"));
}

#[tokio::test]
async fn the_reviews_reproductions_are_refused_with_the_policy_of_the_path() {
    let setup = Setup::start("methods = [\"GET\", \"POST\"]").await;
    let addr = setup.proxy.addr();
    let reader = &setup.reader;
    let anon = &Who::Anonymous;
    for (method, target, who, status, code) in [
        ("GET", "/api/admin/users", reader, 403, "insufficient_scope"),
        (
            "GET",
            "/api/%61dmin/users",
            reader,
            403,
            "insufficient_scope",
        ),
        ("GET", "/api/ADMIN/users", reader, 403, "insufficient_scope"),
        ("GET", "/api/admin/users", anon, 401, "token_missing"),
        ("GET", "/%61pi/admin/users", anon, 401, "token_missing"),
        ("HEAD", "/api/admin/users", anon, 401, "token_missing"),
        (
            "GET",
            "/public/..;/api/admin/users",
            anon,
            400,
            "invalid_path",
        ),
        ("GET", "/api/admin;x/users", reader, 400, "invalid_path"),
        ("GET", "/api/%252e%252e/admin", reader, 400, "invalid_path"),
        ("GET", "/api/adm%C4%B1n/users", reader, 400, "invalid_path"),
        ("GET", "/api/admin./users", reader, 400, "invalid_path"),
        ("GET", "/api/admin.json", reader, 403, "insufficient_scope"),
        ("get", "/api/admin/users", reader, 400, "invalid_method"),
        (
            "POST",
            "/public/x?_method=DELETE",
            anon,
            400,
            "method_override_refused",
        ),
    ] {
        if method == "HEAD" {
            // A HEAD answer has no body to read the code from.
            let answer = send(addr, method, target, who, "").await;
            assert_eq!(answer.status, status, "{method} {target}: {answer:?}");
            continue;
        }
        let mut raw = RawConn::connect(addr).await;
        let auth = who.authorization();
        raw.send(
            format!("{method} {target} HTTP/1.1\r\nHost: warden.test\r\n{auth}\r\n").as_bytes(),
        )
        .await;
        let resp = raw.read_response().await;
        assert_eq!(resp.status, status, "{method} {target}");
        assert_problem(&resp.headers, &resp.body, code);
    }
}

// ------------------------------------------------------------------ with the echo upstream

async fn echo_and_proxy(config: impl FnOnce(Config) -> Config) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(config(Config::new(&up.url()))).await;
    (up, proxy)
}

#[tokio::test]
async fn method_overrides_lower_case_methods_and_bad_paths_never_reach_the_upstream() {
    let (up, proxy) = echo_and_proxy(|c| c).await;
    let cases = [
        (
            "POST /public/x HTTP/1.1\r\nX-HTTP-Method-Override: DELETE\r\n",
            "method_override_refused",
        ),
        (
            "POST /public/x HTTP/1.1\r\nx_method_override: DELETE\r\n",
            "method_override_refused",
        ),
        (
            "POST /public/x?_method=DELETE HTTP/1.1\r\n",
            "method_override_refused",
        ),
        ("get /public/x HTTP/1.1\r\n", "invalid_method"),
        ("GET /public/..;/x HTTP/1.1\r\n", "invalid_path"),
        ("GET /public/%2561 HTTP/1.1\r\n", "invalid_path"),
        ("GET /public/a%3Bb HTTP/1.1\r\n", "invalid_path"),
        ("GET /public/a%C0%AE HTTP/1.1\r\n", "invalid_path"),
        ("GET /public/x%0a HTTP/1.1\r\n", "invalid_path"),
    ];
    for (head, code) in cases {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("{head}Host: warden.test\r\nContent-Length: 0\r\n\r\n").as_bytes())
            .await;
        let resp = raw.read_response().await;
        assert_eq!(resp.status, 400, "{head}");
        let problem = assert_problem(&resp.headers, &resp.body, code);
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn the_upstream_receives_the_normal_form_of_the_path() {
    let (_up, proxy) = echo_and_proxy(|c| c).await;
    for (sent, seen) in [
        ("/public/%61%62c", "/public/abc"),
        ("/public/%7Euser/a%2db", "/public/~user/a-b"),
        ("/public/a%40b%3a", "/public/a%40b%3A"),
        ("/public/caf%c3%a9", "/public/caf%C3%A9"),
        ("/Public/MiXeD", "/Public/MiXeD"),
        ("/public/x?q=%61", "/public/x"),
    ] {
        let reply = Client::http1().get(&proxy.url(sent)).await;
        assert_eq!(reply.echo().path, seen, "{sent}");
    }
    let reply = Client::http1().get(&proxy.url("/public/x?q=%61")).await;
    assert_eq!(
        reply.echo().query.as_deref(),
        Some("q=%61"),
        "the query is not touched"
    );
}

#[tokio::test]
async fn under_a_base_path_the_upstream_receives_the_normal_form_too() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(Config::new(&format!("{}/base/", up.url()))).await;
    let reply = Client::http1().get(&proxy.url("/public/%61?x=%61")).await;
    let echo = reply.echo();
    assert_eq!(echo.path, "/base/public/a");
    assert_eq!(echo.query.as_deref(), Some("x=%61"));
    let reply = Client::http1().get(&proxy.url("/public/b?y=1")).await;
    assert_eq!(reply.echo().path, "/base/public/b");
}

// ------------------------------------------------------------------ header hygiene

const TRUST_LOCALHOST: &str = "trusted_proxies = [\"127.0.0.1/32\"]";

#[tokio::test]
async fn underscore_spellings_of_identity_and_proxy_headers_never_reach_the_upstream() {
    // CGI and WSGI servers (wsgiref, old gunicorn) read X_Warden_Client_Id as X-Warden-Client-Id.
    for trust in ["", TRUST_LOCALHOST] {
        let (_up, proxy) = echo_and_proxy(|c| c.server(trust)).await;
        let req = Request::get(proxy.url("/public/x"))
            .header("X_Warden_Client_Id", "acme-admin")
            .header("X_Warden_Scopes", "level://admin")
            .header("x-warden_token_id", "t")
            .header("X_Forwarded_For", "10.9.9.9")
            .header("X_Forwarded_Host", "evil.example")
            .header("X_Real_IP", "10.9.9.9")
            .header("True_Client_IP", "10.9.9.9")
            .header("X_Client_Id", "acme-admin")
            .header("Content_Digest", "sha-256=:AAAA:")
            .header("X_Original_URL", "/admin")
            .header("my_header", "kept")
            .body(Full::default())
            .unwrap();
        let echo = Client::http1().send(req).await.echo();
        let underscored: Vec<&String> = echo.headers.keys().filter(|k| k.contains('_')).collect();
        assert_eq!(
            underscored,
            ["my_header"],
            "trust {trust:?}: {:?}",
            echo.headers
        );
        assert!(echo.header("x-warden-client-id").is_none());
    }
}

#[tokio::test]
async fn proxy_claims_from_untrusted_peers_never_reach_the_upstream() {
    let claims = [
        ("x-real-ip", "10.0.0.1"),
        ("true-client-ip", "10.0.0.1"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "//evil.example"),
        ("x-forwarded-server", "evil.example"),
        ("x-forwarded-ssl", "on"),
        ("x-original-forwarded-for", "10.0.0.1"),
        ("cf-connecting-ip", "10.0.0.1"),
        ("fastly-client-ip", "10.0.0.1"),
        ("x-client-ip", "10.0.0.1"),
        ("x-cluster-client-ip", "10.0.0.1"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
    ];
    let request = |proxy: &Proxy| {
        let mut req = Request::get(proxy.url("/public/x"));
        for (k, v) in claims {
            req = req.header(k, v);
        }
        req.body(Full::default()).unwrap()
    };
    let (_up, proxy) = echo_and_proxy(|c| c).await;
    let echo = Client::http1().send(request(&proxy)).await.echo();
    for (k, _) in claims {
        assert!(echo.header(k).is_none(), "{k} from an untrusted peer");
    }
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));

    // From a trusted proxy they pass, but for those that would reroute the request upstream.
    let (_up, proxy) = echo_and_proxy(|c| c.server(TRUST_LOCALHOST)).await;
    let echo = Client::http1().send(request(&proxy)).await.echo();
    for (k, v) in claims {
        let routing = k == "x-original-url" || k == "x-rewrite-url";
        let want = (!routing).then(|| v.to_owned());
        assert_eq!(echo.header(k), want, "{k} from a trusted proxy");
    }
}

// ------------------------------------------------------------------ Host and :authority

#[tokio::test]
async fn http2_host_disagreeing_with_authority_is_refused() {
    let (up, proxy) = echo_and_proxy(|c| c).await;
    let req = Request::get(proxy.url("/public/x"))
        .header("host", "other.example")
        .body(Full::default())
        .unwrap();
    let reply = Client::h2c().send(req).await;
    assert_eq!(reply.version, http::Version::HTTP_2);
    reply.problem(400, "host_mismatch");
    // The same authority in another case, and no host at all, are fine.
    let authority = proxy.addr().to_string();
    for host in [Some(authority.to_uppercase()), None] {
        let mut req = Request::get(proxy.url("/public/x"));
        if let Some(h) = &host {
            req = req.header("host", h.as_str());
        }
        let reply = Client::h2c().send(req.body(Full::default()).unwrap()).await;
        assert_eq!(reply.status, 200, "{host:?}: {}", reply.text());
    }
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn http1_host_must_be_single_and_agree_with_an_absolute_target() {
    let (up, proxy) = echo_and_proxy(|c| c).await;
    for (head, status) in [
        (
            "GET http://a.example/public/x HTTP/1.1\r\nHost: b.example\r\n",
            400,
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",
            400,
        ),
        (
            "GET http://user@a.example/public/x HTTP/1.1\r\nHost: user@a.example\r\n",
            400,
        ),
        (
            "GET http://a.example/public/x HTTP/1.1\r\nHost: A.example\r\n",
            200,
        ),
        (
            "GET http://a.example:80/public/x HTTP/1.1\r\nHost: a.example\r\n",
            200,
        ),
    ] {
        let mut raw = RawConn::connect(proxy.addr()).await;
        raw.send(format!("{head}\r\n").as_bytes()).await;
        let resp = raw.read_response().await;
        assert_eq!(resp.status, status, "{head}");
        if status == 400 {
            assert_problem(&resp.headers, &resp.body, "host_mismatch");
        }
    }
    assert_eq!(up.calls(), 2);
}

#[tokio::test]
async fn no_spelling_of_wardens_own_endpoints_is_forwarded() {
    let (up, proxy) = echo_and_proxy(|c| c).await;
    for path in [
        "/HEALTHZ",
        "/healthz/",
        "/%68ealthz",
        "/V1/OAuth/Token",
        "/v1/auth/",
        "/v1/oauth/token.json",
        "/WS/accounts/acme/credentials/Tokens",
        "/ws/accounts/acme/credentials/tokens/",
        "/WS/Accounts/acme/Webhooks",
        "/ws/accounts/acme/webhooks/",
        "/ws/accounts/acme/%77ebhooks",
        "/ws/accounts/acme/webhooks.json",
        "/ws/accounts/acme/webhooks/wh_1/DISABLE",
    ] {
        let reply = Client::http1().get(&proxy.url(path)).await;
        assert_ne!(reply.header("x-upstream"), Some("echo"), "{path}");
    }
    assert_eq!(up.calls(), 0);

    // The metrics path, when served, is one of Warden's own in the same spellings.
    let (up, proxy) = echo_and_proxy(|c| c.append(crate::metrics::METRICS_ON)).await;
    for path in [
        "/metrics",
        "/METRICS",
        "/metrics/",
        "/%6detrics",
        "/metrics.txt",
    ] {
        let reply = Client::http1().get(&proxy.url(path)).await;
        assert_ne!(reply.header("x-upstream"), Some("echo"), "{path}");
    }
    assert_eq!(up.calls(), 0);
}
