use super::*;
use crate::policy::{AuthMode, Policy, SignatureMode};

fn m(p: &str, path: &str) -> bool {
    PathPattern::parse(p).unwrap().matches(path)
}

#[test]
fn literal_patterns_match_exactly() {
    assert!(m("/v1/orders", "/v1/orders"));
    assert!(!m("/v1/orders", "/v1/orders/1"));
    assert!(!m("/v1/orders", "/v1/ordersX"));
    assert!(!m("/v1/orders", "/V1/Orders"), "case-sensitive unless told");
    assert!(m("/", "/"));
    assert!(!m("/", "/a"));
}

#[test]
fn a_trailing_slash_is_not_significant() {
    // Express (strict: false) and Spring (trailing slash match) run /a's handler for /a/.
    assert!(m("/v1/orders", "/v1/orders/"));
    assert!(m("/v1/orders/", "/v1/orders"));
    assert!(m("/v1/orders/", "/v1/orders/"));
    assert!(!m("/v1/orders/{id}", "/v1/orders/"));
    assert!(m("/v1/orders/{id}", "/v1/orders/7/"));
}

#[test]
fn a_format_suffix_on_the_last_segment_takes_the_policy_of_its_stem() {
    assert!(m("/api/admin/**", "/api/admin.json"));
    assert!(m("/api/admin", "/api/admin.tar.gz/"));
    assert!(m("/api/admin/users", "/api/admin/users.xml"));
    assert!(
        !m("/api/admin/users", "/api/admin.json/users"),
        "only the last segment"
    );
    assert!(!m("/api/admin/{id}", "/api/admin.json"));
    assert!(!m("/api/admin", "/api/administrator"));
    assert!(!m("/api/admin", "/api/admin."), "no empty format");
    assert!(!m("/", "/.json"));
    assert!(
        PathPattern::parse("/api/admin/**")
            .unwrap()
            .case_insensitive(true)
            .matches("/API/Admin.JSON")
    );
}

#[test]
fn literals_match_the_decoded_segment_and_may_ignore_ascii_case() {
    assert!(m("/a@b/x", "/a@b/x"));
    assert!(m("/a%40b/x", "/a@b/x"), "patterns are decoded too");
    let ci = |p: &str, path: &str| {
        PathPattern::parse(p)
            .unwrap()
            .case_insensitive(true)
            .matches(path)
    };
    assert!(ci("/api/admin/**", "/API/Admin/users"));
    assert!(ci("/api/admin", "/api/ADMIN/"));
    assert!(!ci("/api/admin", "/api/admins"));
    assert!(!ci("/café", "/CAFÉ"), "only ASCII letters fold");
    assert!(PathPattern::parse("/api/x").unwrap().is_ascii());
    assert!(!PathPattern::parse("/café/**").unwrap().is_ascii());
}

#[test]
fn single_wildcards_take_one_non_empty_segment() {
    assert!(m("/v1/orders/{id}", "/v1/orders/42"));
    assert!(!m("/v1/orders/{id}", "/v1/orders/"));
    assert!(!m("/v1/orders/{id}", "/v1/orders/42/items"));
    assert!(m("/v1/*/items", "/v1/a/items"));
}

#[test]
fn double_wildcard_takes_the_rest() {
    assert!(m("/**", "/"));
    assert!(m("/**", "/anything/at/all"));
    assert!(m("/static/**", "/static"));
    assert!(m("/static/**", "/static/a/b"));
    assert!(!m("/static/**", "/staticx"));
}

fn refusal(path: &str) -> Option<PathRefusal> {
    normalize_path(path).err()
}

#[test]
fn ordinary_paths_are_accepted_as_they_are() {
    for ok in [
        "/",
        "/a",
        "/a/",
        "/a/b.c",
        "/a/..b",
        "/a/.well-known",
        "/a%20b",
        "/a%40b",
        "/50%25",
        "/%25zz",
        "/caf%C3%A9",
        "/a+b",
        "/a:b@c!$&'()*,=",
        "/{\"json\":1}",
    ] {
        let n = normalize_path(ok).unwrap_or_else(|r| panic!("{ok}: {r:?}"));
        assert!(matches!(n.forwarded, Cow::Borrowed(_)), "{ok}");
    }
    let plain = normalize_path("/v1/orders/42").unwrap();
    assert!(
        matches!(plain.decoded, Cow::Borrowed(_)),
        "no copy for plain paths"
    );
}

#[test]
fn unreserved_escapes_are_decoded_and_others_upper_cased() {
    let n = normalize_path("/api/%61dmin/%7euser/%2d%2E%5f/a%40b%3a/caf%c3%a9/%41").unwrap();
    assert_eq!(n.decoded, "/api/admin/~user/-._/a@b:/café/A");
    assert_eq!(n.forwarded, "/api/admin/~user/-._/a%40b%3A/caf%C3%A9/A");
    // Raw UTF-8 is forwarded percent-encoded, and routed as the character.
    let n = normalize_path("/café").unwrap();
    assert_eq!((&*n.decoded, &*n.forwarded), ("/café", "/caf%C3%A9"));
    // Case is the client's: only the routing comparison may ignore it.
    assert_eq!(
        normalize_path("/API/Admin").unwrap().forwarded,
        "/API/Admin"
    );
}

#[test]
fn every_spelling_an_upstream_could_read_differently_is_refused() {
    use PathRefusal::*;
    for (bad, why) in [
        ("", NotAbsolute),
        ("a", NotAbsolute),
        ("*", NotAbsolute),
        ("/a/../b", DotSegment),
        ("/..", DotSegment),
        ("/a/.", DotSegment),
        ("/a/./b", DotSegment),
        ("/a/%2e%2E/b", DotSegment),
        ("/a/.%2e", DotSegment),
        ("/a/%2e/b", DotSegment),
        ("//a", EmptySegment),
        ("/a//b", EmptySegment),
        ("/a%2fb", EncodedSeparator),
        ("/a%5Cb", EncodedSeparator),
        ("/a\\b", Backslash),
        ("/a%00", ControlCharacter),
        ("/a%0a", ControlCharacter),
        ("/a%09b", ControlCharacter),
        ("/a%7F", ControlCharacter),
        ("/a%C2%85", ControlCharacter),
        ("/public/..;/admin", PathParameter),
        ("/admin;x/users", PathParameter),
        ("/admin;/users", PathParameter),
        ("/admin%3bx/users", PathParameter),
        ("/a;jsessionid=1", PathParameter),
        ("/admin%3F/x", EncodedDelimiter),
        ("/admin%23/x", EncodedDelimiter),
        ("/a%", MalformedEscape),
        ("/a%2", MalformedEscape),
        ("/a%zz", MalformedEscape),
        ("/a%u002e", MalformedEscape),
        ("/%%32%65", MalformedEscape),
        ("/a/%252e%252e/b", DoubleEncoding),
        ("/%2561dmin", DoubleEncoding),
        ("/a%25%32%65", DoubleEncoding),
        ("/a%25u002e", DoubleEncoding),
        ("/a%C0%AE", NotUtf8),
        ("/a%C0%AF", NotUtf8),
        ("/a%FF", NotUtf8),
        ("/adm%C4%B1n", CaseFoldsToAscii),
        ("/%C5%BFecret", CaseFoldsToAscii),
        ("/\u{212a}ey", CaseFoldsToAscii),
        ("/\u{130}d", CaseFoldsToAscii),
        ("/admin./x", TrailingDot),
        ("/admin%2e/x", TrailingDot),
        ("/a/...", TrailingDot),
        ("/admin%20/x", EdgeSpace),
        ("/%20admin", EdgeSpace),
        ("/admin%C2%A0/x", EdgeSpace),
        ("/admin%E3%80%80", EdgeSpace),
    ] {
        assert_eq!(refusal(bad), Some(why), "{bad}");
    }
}

#[test]
fn the_case_folding_list_is_complete() {
    // Every non-ASCII character whose simple (one-character) case mapping is ASCII, plus
    // U+0130, whose simple lower case is `i` (Rust gives its full mapping, `i̇`).
    let mut found = vec!['\u{130}'];
    for c in (0x80..=0x10FFFF).filter_map(char::from_u32) {
        let single_ascii = |m: String| m.len() == 1 && m.is_ascii();
        if single_ascii(c.to_lowercase().collect()) || single_ascii(c.to_uppercase().collect()) {
            found.push(c);
        }
    }
    found.sort_unstable();
    assert_eq!(found, ['\u{130}', '\u{131}', '\u{17f}', '\u{212a}']);
    for c in found {
        assert_eq!(
            refusal(&format!("/{c}")),
            Some(PathRefusal::CaseFoldsToAscii)
        );
    }
}

proptest::proptest! {
    #[test]
    fn normalizing_never_panics(s in "\\PC{0,40}") {
        let _ = normalize_path(&s);
    }

    /// The normal form is a fixed point that routes the same, and what is accepted once
    /// is accepted again: forwarding it cannot change the decision upstream of a second
    /// Warden.
    #[test]
    fn the_normal_form_is_stable(s in "/[a-zA-Z0-9%._~@:!;/-]{0,30}") {
        if let Ok(n) = normalize_path(&s) {
            let again = normalize_path(&n.forwarded).unwrap();
            proptest::prop_assert_eq!(&again.forwarded, &n.forwarded);
            proptest::prop_assert_eq!(&again.decoded, &n.decoded);
        }
    }
}

#[test]
fn bad_patterns_are_refused() {
    assert!(PathPattern::parse("v1").is_err());
    assert!(PathPattern::parse("/**/x").is_err());
    assert!(PathPattern::parse("/a*").is_err());
    assert!(PathPattern::parse("/a?b").is_err());
    assert!(PathPattern::parse("/public/..;/x").is_err());
    assert!(PathPattern::parse("/a/../b").is_err());
    assert!(PathPattern::parse("/a%2Fb").is_err());
}

#[test]
fn own_endpoints_win_and_methods_narrow_routes() {
    let route = |p: &str, methods: &[Method]| Route {
        name: p.into(),
        index: 0,
        pattern: PathPattern::parse(p).unwrap(),
        methods: methods.to_vec(),
        policy: Policy::new(AuthMode::None),
    };
    let endpoints = crate::Settings::from_toml("").unwrap().endpoints;
    let r = Router::new(
        &endpoints,
        vec![
            route("/a", &[Method::GET]),
            route("/a", &[Method::PUT]),
            route("/**", &[Method::POST]),
        ],
    );
    assert!(matches!(
        r.resolve(&Method::GET, "/healthz"),
        Target::Health
    ));
    assert!(
        matches!(r.resolve(&Method::GET, "/a"), Target::Proxy(rt) if rt.methods == [Method::GET])
    );
    match r.resolve(&Method::DELETE, "/a") {
        Target::MethodNotAllowed(allow) => assert_eq!(allow, "GET, POST, PUT"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(r.resolve(&Method::POST, "/zzz"), Target::Proxy(_)));
    // HEAD is GET without a body: frameworks run the GET handler for it.
    assert!(
        matches!(r.resolve(&Method::HEAD, "/a"), Target::Proxy(rt) if rt.methods == [Method::GET])
    );
    assert!(matches!(
        r.resolve(&Method::POST, "/v1/oauth/token"),
        Target::OAuthToken
    ));
    // Own endpoints are recognised in every spelling a route would be.
    assert!(matches!(
        r.resolve(&Method::GET, "/healthz/"),
        Target::Health
    ));
    assert!(matches!(
        r.resolve(&Method::GET, "/healthz.json"),
        Target::Health
    ));
    assert!(matches!(
        r.resolve(&Method::POST, "/healthz.x/y"),
        Target::Proxy(_)
    ));
    assert!(matches!(
        r.resolve(&Method::POST, "/V1/Auth"),
        Target::Proxy(_)
    ));
    let ci = r.clone().case_insensitive(true);
    assert!(matches!(
        ci.resolve(&Method::POST, "/V1/Auth"),
        Target::Auth
    ));
    assert!(matches!(
        ci.resolve(&Method::GET, "/WS/Accounts/acme/credentials/TOKENS/x/"),
        Target::Tokens
    ));
    assert!(matches!(
        r.resolve(&Method::GET, "/ws/accounts/acme/credentials/tokens/"),
        Target::Tokens
    ));
    let empty = Router::new(&endpoints, vec![]);
    assert!(matches!(
        empty.resolve(&Method::GET, "/a"),
        Target::NotFound
    ));
}

#[test]
fn a_method_falls_through_only_to_a_route_listing_it_or_at_least_as_strict() {
    let endpoints = crate::Settings::from_toml("").unwrap().endpoints;
    let settings = |toml: &str| crate::Settings::from_toml(toml).unwrap();
    let resolve = |toml: &str, method: Method, path: &str| -> Option<String> {
        let s = settings(toml);
        match Router::new(&endpoints, s.routes).resolve(&method, path) {
            Target::Proxy(r) => Some(r.name.clone()),
            Target::MethodNotAllowed(allow) => Some(format!("405 {allow}")),
            _ => None,
        }
    };
    // The review's catch-all: PUT on the bearer path must not become public.
    let catch_all = r#"
        [[routes]]
        name = "api"
        path = "/api/**"
        auth = "bearer"
        methods = ["GET", "POST"]
        [[routes]]
        name = "public"
        path = "/**"
        auth = "none"
    "#;
    assert_eq!(
        resolve(catch_all, Method::PUT, "/api/admin").unwrap(),
        "405 GET, POST"
    );
    assert_eq!(
        resolve(catch_all, Method::HEAD, "/api/admin").unwrap(),
        "api"
    );
    assert_eq!(resolve(catch_all, Method::PUT, "/other").unwrap(), "public");
    // A public read, and everything else behind a token: stricter, so it takes the rest.
    let public_read = r#"
        [[routes]]
        name = "list"
        path = "/api/orders"
        auth = "none"
        methods = ["GET"]
        [[routes]]
        name = "api"
        path = "/api/**"
        auth = "bearer"
    "#;
    assert_eq!(
        resolve(public_read, Method::POST, "/api/orders").unwrap(),
        "api"
    );
    // A scope on GET only: other methods are not handed to a route without it.
    let scoped = r#"
        [[routes]]
        name = "admin"
        path = "/api/admin/**"
        auth = "bearer"
        methods = ["GET"]
        scopes = ["level://admin"]
        [[routes]]
        name = "api"
        path = "/api/**"
        auth = "bearer"
        [[routes]]
        name = "any-admin"
        path = "/api/**"
        auth = "bearer"
        scopes = ["level://**"]
        [[routes]]
        name = "open-put"
        path = "/**"
        auth = "none"
        methods = ["PUT"]
    "#;
    assert_eq!(
        resolve(scoped, Method::POST, "/api/admin/x").unwrap(),
        "any-admin"
    );
    assert_eq!(
        resolve(scoped, Method::PUT, "/api/admin/x").unwrap(),
        "any-admin"
    );
    assert_eq!(resolve(scoped, Method::POST, "/api/x").unwrap(), "api");
    // A route that lists the method takes it: the operator said so for that method.
    let explicit = r#"
        [[routes]]
        name = "read"
        path = "/a"
        auth = "bearer"
        methods = ["GET"]
        [[routes]]
        name = "write"
        path = "/a"
        auth = "none"
        methods = ["POST"]
    "#;
    assert_eq!(resolve(explicit, Method::POST, "/a").unwrap(), "write");
    assert_eq!(
        resolve(explicit, Method::PUT, "/a").unwrap(),
        "405 GET, POST"
    );
}

#[test]
fn a_route_mode_other_than_auto_wins_and_auto_defers_to_the_client() {
    use SignatureMode::*;
    assert_eq!(Auto.effective(Auto, true), Required);
    assert_eq!(Auto.effective(Auto, false), Optional);
    assert_eq!(Auto.effective(Optional, true), Optional);
    assert_eq!(Auto.effective(Required, true), Required);
    assert_eq!(Auto.effective(Off, true), Off);
    assert_eq!(Off.effective(Required, true), Off);
    assert_eq!(Optional.effective(Required, true), Optional);
    assert_eq!(Required.effective(Auto, false), Required);
}
