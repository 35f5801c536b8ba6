use http::{Method, Uri};

use super::*;

fn ask(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<OriginalRequest, ForwardAuthRefusal> {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let uri: Uri = target.parse().unwrap();
    original(
        &Method::from_bytes(method.as_bytes()).unwrap(),
        &uri,
        &h,
        "/fa",
    )
}

#[test]
fn envoy_puts_the_original_path_and_query_under_the_endpoint() {
    let o = ask("DELETE", "/fa/api/x?y=1", &[]).unwrap();
    assert_eq!(o.method, Method::DELETE);
    assert_eq!(o.uri, "/api/x?y=1");
    assert_eq!(o.convention, Convention::PathPrefix);
    assert_eq!(ask("GET", "/fa/", &[]).unwrap().uri, "/");
    // Headers a client sent through Envoy are not read in this mode.
    let o = ask("GET", "/fa/api", &[("x-original-uri", "/admin")]).unwrap();
    assert_eq!(o.uri, "/api");
}

#[test]
fn nginx_and_traefik_name_the_original_in_headers() {
    let o = ask(
        "GET",
        "/fa",
        &[("x-original-method", "POST"), ("x-original-uri", "/a?b")],
    )
    .unwrap();
    assert_eq!(
        (o.method, o.uri.to_string(), o.convention),
        (Method::POST, "/a?b".into(), Convention::Original)
    );
    let o = ask(
        "GET",
        "/fa",
        &[("x-forwarded-method", "PUT"), ("x-forwarded-uri", "/c")],
    )
    .unwrap();
    assert_eq!(
        (o.method, o.convention),
        (Method::PUT, Convention::Forwarded)
    );
}

#[test]
fn mixed_repeated_partial_or_missing_originals_are_refused() {
    use ForwardAuthRefusal::*;
    let both = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/a"),
        ("x-forwarded-uri", "/admin"),
    ];
    assert_eq!(ask("GET", "/fa", &both), Err(OriginalAmbiguous));
    let twice = [
        ("x-original-method", "GET"),
        ("x-original-uri", "/a"),
        ("x-original-uri", "/b"),
    ];
    assert_eq!(ask("GET", "/fa", &twice), Err(OriginalAmbiguous));
    assert_eq!(
        ask("GET", "/fa", &[("x-original-uri", "/a")]),
        Err(OriginalMissing)
    );
    assert_eq!(ask("GET", "/fa", &[]), Err(OriginalMissing));
    for bad in ["http://evil/a", "//evil/a", "a", "/a#f", "*"] {
        let h = [("x-original-method", "GET"), ("x-original-uri", bad)];
        assert_eq!(ask("GET", "/fa", &h), Err(OriginalInvalid), "{bad}");
    }
    assert_eq!(ask("GET", "/fax/a", &[]), Err(OriginalInvalid));
    assert_eq!(ask("GET", "/FA/a", &[]), Err(OriginalInvalid));
}

proptest::proptest! {
    #[test]
    fn any_original_is_read_or_refused_without_panicking(
        uri in "\\PC{0,40}", method in "\\PC{0,10}", path in "/fa[/a-z%0-9;.]{0,20}"
    ) {
        let mut h = HeaderMap::new();
        if let (Ok(u), Ok(m)) = (HeaderValue::from_str(&uri), HeaderValue::from_str(&method)) {
            h.insert(X_ORIGINAL_URI, u);
            h.insert(X_ORIGINAL_METHOD, m);
        }
        if let Ok(target) = path.parse::<Uri>() {
            if let Ok(o) = original(&Method::GET, &target, &h, "/fa") {
                proptest::prop_assert!(o.uri.path().starts_with('/'));
                proptest::prop_assert!(o.uri.authority().is_none());
            }
        }
    }
}
