use super::*;

#[test]
fn each_method_and_path_is_one_operation_or_a_clear_refusal() {
    let id = "mt_0123456789abcdef0123456789abcdef";
    let cases = [
        (Method::GET, Rest::Collection, Ok(TokenOp::List)),
        (Method::POST, Rest::Collection, Ok(TokenOp::Create)),
        (Method::GET, Rest::Token(id), Ok(TokenOp::Show(id))),
        (Method::DELETE, Rest::Token(id), Ok(TokenOp::Delete(id))),
        (
            Method::PUT,
            Rest::Operation(id, "rename"),
            Ok(TokenOp::Rename(id)),
        ),
        (
            Method::PUT,
            Rest::Operation(id, "enable"),
            Ok(TokenOp::Enable(id)),
        ),
        (
            Method::PUT,
            Rest::Operation(id, "disable"),
            Ok(TokenOp::Disable(id)),
        ),
        (Method::DELETE, Rest::Collection, Err("GET, POST")),
        (Method::HEAD, Rest::Token(id), Err("DELETE, GET")),
        (Method::POST, Rest::Operation(id, "enable"), Err("PUT")),
    ];
    for (method, rest, want) in cases {
        match (TokenOp::of(&method, rest), want) {
            (Ok(op), Ok(w)) => assert_eq!(op, w),
            (Err(Problem::MethodNotAllowed { allow }), Err(w)) => assert_eq!(allow, w),
            (got, w) => panic!("{method} {rest:?}: {got:?}, wanted {w:?}"),
        }
    }
    // An operation the API does not have is not found, whatever the method.
    for method in [Method::PUT, Method::GET] {
        assert!(matches!(
            TokenOp::of(&method, Rest::Operation(id, "Enable")),
            Err(Problem::NotFound {
                what: "token operation"
            })
        ));
    }
}

#[test]
fn token_ids_are_checked_for_shape() {
    assert!(valid_token_id("mt_0123456789abcdef0123456789abcdef"));
    assert!(!valid_token_id("mt_0123456789ABCDEF0123456789abcdef"));
    assert!(!valid_token_id("at_0123456789abcdef0123456789abcdef"));
    assert!(!valid_token_id("mt_0123"));
    assert!(!valid_token_id("../etc"));
}

fn spec(scopes: &[&str]) -> ManagedSpec {
    ManagedSpec {
        name: "ci".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..ManagedSpec::default()
    }
}

#[test]
fn a_spec_grants_only_what_every_grantor_holds() {
    let caller = vec!["table://*.**".to_string(), "level://admin".to_string()];
    let client = vec!["table://**".to_string(), "level://*".to_string()];
    let grantors: [&[String]; 2] = [&caller, &client];
    let mut ok = spec(&["table://a.b", "table://a.b", "level://admin"]);
    ok.vet(128, &grantors, None, 0).unwrap();
    assert_eq!(ok.scopes, ["table://a.b", "level://admin"]);
    let e = spec(&["level://root"])
        .vet(128, &grantors, None, 0)
        .unwrap_err();
    assert_eq!(e.0, TokenRefusal::ScopeNotHeld);
    let e = spec(&["table://a"])
        .vet(128, &grantors, None, 0)
        .unwrap_err();
    assert_eq!(e.0, TokenRefusal::ScopeNotHeld);
    let e = spec(&["table://a..b"])
        .vet(128, &grantors, None, 0)
        .unwrap_err();
    assert_eq!(e.0, TokenRefusal::InvalidField);
    let e = spec(&[]).vet(128, &grantors, None, 0).unwrap_err();
    assert_eq!(e.0, TokenRefusal::InvalidField);
}

#[test]
fn names_audiences_and_expiry_are_checked() {
    let held = vec!["read".to_string()];
    let grantors: [&[String]; 1] = [&held];
    let mut long = spec(&["read"]);
    long.name = "x".repeat(9);
    assert_eq!(
        long.vet(8, &grantors, None, 0).unwrap_err().0,
        TokenRefusal::NameTooLong
    );
    let mut blank = spec(&["read"]);
    blank.name = "  ".into();
    assert_eq!(
        blank.vet(8, &grantors, None, 0).unwrap_err().0,
        TokenRefusal::InvalidField
    );
    let mut inherits = spec(&["read"]);
    inherits.vet(8, &grantors, Some("orders"), 0).unwrap();
    assert_eq!(inherits.audience.as_deref(), Some("orders"));
    let mut other = spec(&["read"]);
    other.audience = Some("billing".into());
    assert_eq!(
        other.vet(8, &grantors, Some("orders"), 0).unwrap_err().0,
        TokenRefusal::ScopeNotHeld
    );
    let mut past = spec(&["read"]);
    past.expires_at = Some(100);
    assert_eq!(
        past.vet(8, &grantors, None, 100).unwrap_err().0,
        TokenRefusal::InvalidField
    );
}

#[test]
fn create_bodies_refuse_unknown_fields_and_take_scopes_either_way() {
    let e = parse_json::<CreateBody>(br#"{"name":"a","scopes":"x","admin":true}"#).unwrap_err();
    assert_eq!(e.code(), "invalid_json");
    let b: CreateBody = parse_json(br#"{"name":"a","scopes":" x  y ","expiresIn":60}"#).unwrap();
    let s = spec_of(b, 1000).unwrap();
    assert_eq!(s.scopes, ["x", "y"]);
    assert_eq!(s.expires_at, Some(1060));
    let b: CreateBody = parse_json(br#"{"name":"a","scopes":["x","y"]}"#).unwrap();
    assert_eq!(spec_of(b, 0).unwrap().scopes, ["x", "y"]);
    let b: CreateBody = parse_json(br#"{"name":"a","scopes":[1]}"#).unwrap();
    assert_eq!(spec_of(b, 0).unwrap_err().code(), "invalid_json");
    let b: CreateBody =
        parse_json(br#"{"name":"a","scopes":"x","expiresIn":1,"expiresAt":5}"#).unwrap();
    assert_eq!(spec_of(b, 0).unwrap_err().code(), "invalid_field");
}
