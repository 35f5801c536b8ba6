use super::*;

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn token(header: &str, claims: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(claims), b64("sig"))
}

fn claims(json: &str) -> Claims {
    Claims(serde_json::from_str(json).unwrap())
}

#[test]
fn opaque_tokens_are_not_jwts() {
    for t in [
        "abc",
        "a.b.c",
        "ya29.a0Af.x_y",
        "a.b.c.d",
        "..",
        "e30.e30.e30",
    ] {
        assert!(split(t).is_none(), "{t}");
    }
    // A JSON header without alg is no JWS header either.
    assert!(split(&token(r#"{"typ":"JWT"}"#, "{}")).is_none());
}

#[test]
fn a_jwt_splits_into_header_claims_and_signature() {
    let t = token(
        r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
        r#"{"iss":"x"}"#,
    );
    let c = split(&t).unwrap().unwrap();
    assert_eq!(c.header.kid.as_deref(), Some("k1"));
    assert_eq!(c.claims.str("iss").unwrap(), Some("x"));
    assert_eq!(c.signature, b"sig");
    assert_eq!(c.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
}

#[test]
fn malformed_jwts_are_refused() {
    let bad = [
        // A duplicate header member.
        token(r#"{"alg":"ES256","alg":"none"}"#, "{}"),
        // A payload that is no JSON object.
        token(r#"{"alg":"ES256"}"#, "[1]"),
        format!("{}.{}.%%%", b64(r#"{"alg":"ES256"}"#), b64("{}")),
        format!("{}.***.{}", b64(r#"{"alg":"ES256"}"#), b64("s")),
    ];
    for t in bad {
        assert!(matches!(split(&t), Some(Err(Refusal::Malformed))), "{t}");
    }
}

#[test]
fn none_and_hmac_are_never_allowed() {
    for alg in ["none", "HS256", "HS384", "HS512", "RS512", "es256", "NONE"] {
        let t = token(&format!(r#"{{"alg":"{alg}"}}"#), "{}");
        let c = split(&t).unwrap().unwrap();
        assert_eq!(c.alg(&Alg::ALL), Err(Refusal::AlgorithmNotAllowed), "{alg}");
    }
    let t = token(r#"{"alg":"RS256"}"#, "{}");
    let c = split(&t).unwrap().unwrap();
    assert_eq!(c.alg(&Alg::ALL), Ok(Alg::Rs256));
    assert_eq!(c.alg(&[Alg::Es256]), Err(Refusal::AlgorithmNotAllowed));
}

#[test]
fn typ_is_at_jwt_unless_plain_jwt_is_allowed() {
    let typ = |t: Option<&str>| {
        let h = match t {
            Some(t) => format!(r#"{{"alg":"ES256","typ":"{t}"}}"#),
            None => r#"{"alg":"ES256"}"#.to_string(),
        };
        let tok = token(&h, "{}");
        let c = split(&tok).unwrap().unwrap();
        (c.check_header(false), c.check_header(true))
    };
    assert_eq!(typ(Some("at+jwt")), (Ok(()), Ok(())));
    assert_eq!(typ(Some("application/AT+JWT")), (Ok(()), Ok(())));
    assert_eq!(typ(Some("JWT")), (Err(Refusal::WrongType), Ok(())));
    assert_eq!(typ(None), (Err(Refusal::WrongType), Ok(())));
    for other in ["id_token+jwt", "logout+jwt", "dpop+jwt", "secevent+jwt"] {
        assert_eq!(typ(Some(other)).1, Err(Refusal::WrongType), "{other}");
    }
    let t = token(r#"{"alg":"ES256","typ":"at+jwt","crit":["b64"]}"#, "{}");
    assert_eq!(
        split(&t).unwrap().unwrap().check_header(true),
        Err(Refusal::Malformed)
    );
}

#[test]
fn times_are_checked_with_leeway() {
    let t = Times {
        leeway: 60,
        max_age: None,
    };
    let now = 1_000_000;
    let c = |j: String| claims(&j);
    assert_eq!(
        t.check(&c(format!(r#"{{"exp":{}}}"#, now + 10)), now, true),
        Ok(Some(now + 70))
    );
    // Expired, but within the leeway.
    assert!(
        t.check(&c(format!(r#"{{"exp":{}}}"#, now - 59)), now, true)
            .is_ok()
    );
    assert_eq!(
        t.check(&c(format!(r#"{{"exp":{}}}"#, now - 60)), now, true),
        Err(Refusal::Expired)
    );
    assert_eq!(t.check(&c("{}".into()), now, true), Err(Refusal::NoExpiry));
    assert_eq!(t.check(&c("{}".into()), now, false), Ok(None));
    let exp = now + 100;
    assert_eq!(
        t.check(
            &c(format!(r#"{{"exp":{exp},"nbf":{}}}"#, now + 61)),
            now,
            true
        ),
        Err(Refusal::NotYetValid)
    );
    assert!(
        t.check(
            &c(format!(r#"{{"exp":{exp},"nbf":{}}}"#, now + 60)),
            now,
            true
        )
        .is_ok()
    );
    assert_eq!(
        t.check(
            &c(format!(r#"{{"exp":{exp},"iat":{}}}"#, now + 61)),
            now,
            true
        ),
        Err(Refusal::IssuedInFuture)
    );
    // Fractional dates are seconds too.
    assert!(
        t.check(
            &c(format!(r#"{{"exp":{exp}.5,"iat":{now}.25}}"#)),
            now,
            true
        )
        .is_ok()
    );
    for bad in [r#"{"exp":"soon"}"#, r#"{"exp":1e300}"#, r#"{"nbf":true}"#] {
        assert_eq!(
            t.check(&c(bad.into()), now, false),
            Err(Refusal::Malformed),
            "{bad}"
        );
    }
}

#[test]
fn max_age_needs_iat_and_bounds_acceptance() {
    let t = Times {
        leeway: 0,
        max_age: Some(300),
    };
    let now = 1_000_000;
    let exp = now + 3600;
    assert_eq!(
        t.check(&claims(&format!(r#"{{"exp":{exp}}}"#)), now, true),
        Err(Refusal::TooOld)
    );
    assert_eq!(
        t.check(
            &claims(&format!(r#"{{"exp":{exp},"iat":{}}}"#, now - 100)),
            now,
            true
        ),
        Ok(Some(now + 200))
    );
    assert_eq!(
        t.check(
            &claims(&format!(r#"{{"exp":{exp},"iat":{}}}"#, now - 300)),
            now,
            true
        ),
        Err(Refusal::TooOld)
    );
}

#[test]
fn lists_are_strings_or_arrays() {
    let c = claims(r#"{"aud":"a","auds":["a","b"],"scope":"x  y","bad":[1],"n":null}"#);
    assert_eq!(c.list("aud", false).unwrap(), ["a"]);
    assert_eq!(c.list("auds", false).unwrap(), ["a", "b"]);
    assert_eq!(c.list("scope", true).unwrap(), ["x", "y"]);
    assert_eq!(c.list("bad", false), Err(Refusal::Malformed));
    assert!(c.list("n", false).unwrap().is_empty());
    assert!(c.list("missing", false).unwrap().is_empty());
}

proptest::proptest! {
    #[test]
    fn splitting_any_text_never_panics(s in "[A-Za-z0-9_.=-]{0,300}") {
        let _ = split(&s);
    }

    #[test]
    fn any_json_header_and_payload_never_panic(h in ".{0,80}", p in ".{0,80}") {
        let t = format!("{}.{}.{}", b64(&h), b64(&p), b64("x"));
        if let Some(Ok(c)) = split(&t) {
            let _ = c.alg(&Alg::ALL);
            let _ = c.check_header(true);
            let _ = Times { leeway: 60, max_age: Some(1) }.check(&c.claims, 0, true);
        }
    }
}
