use super::*;
use proptest::prelude::*;

#[test]
fn identifiers_are_1_to_128_of_a_small_alphabet() {
    assert!(valid_id("shop.web_1:prod-2"));
    assert!(valid_id(&"a".repeat(128)));
    for bad in ["", "a b", "a/b", "é", "a\"b"] {
        assert!(!valid_id(bad), "{bad:?}");
    }
    assert!(!valid_id(&"a".repeat(129)));
}

#[test]
fn scopes_and_audiences_are_visible_ascii_without_quotes() {
    assert!(valid_scope("level://admin") && valid_scope("!#[]~"));
    for bad in ["", "a b", "a\"b", "a\\b", "é", "a\tb"] {
        assert!(!valid_scope(bad), "{bad:?}");
        assert!(!valid_audience(bad), "{bad:?}");
    }
    assert!(valid_audience(&"a".repeat(256)));
    assert!(!valid_audience(&"a".repeat(257)));
    assert!(
        valid_scope(&"a".repeat(257)),
        "only audiences have a length limit here"
    );
}

/// (held, wanted, granted?)
const TABLE: &[(&str, &str, bool)] = &[
    // exact
    ("table://my.app.test", "table://my.app.test", true),
    ("level://admin", "level://admin", true),
    ("read", "read", true),
    ("read", "write", false),
    // prefix tricks: whole segments only
    ("table://my.app", "table://my.apple", false),
    ("table://my.app", "table://my.app.x", false),
    ("table://my.app.x", "table://my.app", false),
    ("table://my.app.*", "table://my.apple", false),
    ("table://my.app.**", "table://my.apple.x", false),
    // `*`: exactly one segment
    ("table://my.app.*", "table://my.app.test", true),
    ("table://my.app.*", "table://my.app", false),
    ("table://my.app.*", "table://my.app.a.b", false),
    ("table://*.app", "table://my.app", true),
    ("table://*", "table://my", true),
    ("table://*", "table://my.app", false),
    // `**`: one or more segments, never zero
    ("table://**", "table://a", true),
    ("table://**", "table://a.b.c", true),
    ("table://**", "table://a/b.c", true),
    ("table://*.**", "table://a.b", true),
    ("table://*.**", "table://a.b.c.d", true),
    ("table://*.**", "table://a", false),
    ("table://my.app.**", "table://my.app", false),
    ("table://my.app.**", "table://my.app.x", true),
    ("table://my.app.**", "table://my.app.x.y", true),
    // `**` in the middle
    ("table://a.**.z", "table://a.b.z", true),
    ("table://a.**.z", "table://a.b.c.d.z", true),
    ("table://a.**.z", "table://a.z", false),
    ("table://a.**.z", "table://a.b.c", false),
    ("table://**.z", "table://z", false),
    ("table://**.z", "table://y.z", true),
    ("table://**.**", "table://a", false),
    ("table://**.**", "table://a.b", true),
    // separators must match where the pattern spells them
    ("table://a.b", "table://a/b", false),
    ("table://a/*", "table://a/b", true),
    ("table://a/*", "table://a.b", false),
    ("table://a.**", "table://a.b/c", true),
    ("table://a.**", "table://a/b", false),
    // case-sensitive, schemes included
    ("table://My.App", "table://my.app", false),
    ("Table://my.app", "table://my.app", false),
    ("table://my.app", "TABLE://my.app", false),
    // scheme confusion
    ("table://**", "level://admin", false),
    ("level://*", "level://admin", true),
    ("level://admin", "levels://admin", false),
    ("table://**", "table:/a", false),
    ("table:a", "table://a", false),
    // opaque scopes match only themselves; `*` means nothing there
    ("*", "read", false),
    ("**", "read", false),
    ("read", "read://x", false),
    // invalid scopes grant nothing and are granted by nothing
    ("table://a..b", "table://a..b", false),
    ("table://**", "table://a..b", false),
    ("table://**", "table://a.", false),
    ("table://**", "table://.a", false),
    ("table://**", "table://", false),
    ("table://**", "table://a*", false),
    ("table://a*", "table://a*", false),
    ("table://***", "table://a", false),
    ("", "", false),
    ("table://**", "table://a b", false),
    ("1table://a", "1table://a", false),
    // wanted scopes with wildcards: granted only when wholly covered
    ("table://**", "table://my.*", true),
    ("table://**", "table://*.**", true),
    ("table://*.**", "table://my.app.*", true),
    ("table://my.*", "table://my.*", true),
    ("table://my.**", "table://my.*", true),
    ("table://my.*", "table://my.**", false),
    ("table://my.app", "table://my.*", false),
    ("table://*.x", "table://**", false),
    ("table://*.**", "table://**", false),
    ("table://**", "table://**", true),
    ("table://a.**.z", "table://a.**.z", true),
    ("table://a.**.z", "table://a.*.**.z", true),
    ("table://a.*.**.z", "table://a.**.z", false),
];

#[test]
fn the_matching_table_holds() {
    let mut wrong = Vec::new();
    for &(held, wanted, expected) in TABLE {
        if grants(held, wanted) != expected {
            wrong.push(format!("grants({held:?}, {wanted:?}) should be {expected}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn validity_is_checked_and_named() {
    assert_eq!(check("table://my.app.test"), Ok(()));
    assert_eq!(check("level://admin"), Ok(()));
    assert_eq!(check("read"), Ok(()));
    assert_eq!(check("table://*.**"), Ok(()));
    assert_eq!(check(""), Err(ScopeError::Empty));
    assert_eq!(check(&"a".repeat(257)), Err(ScopeError::TooLong));
    assert_eq!(check("a b"), Err(ScopeError::Character));
    assert_eq!(check("a\"b"), Err(ScopeError::Character));
    assert_eq!(check("tablé://a"), Err(ScopeError::Character));
    assert_eq!(check("://a"), Err(ScopeError::Scheme));
    assert_eq!(check("1x://a"), Err(ScopeError::Scheme));
    assert_eq!(check("table://"), Err(ScopeError::EmptySegment));
    assert_eq!(check("table://a..b"), Err(ScopeError::EmptySegment));
    assert_eq!(check("table://a/"), Err(ScopeError::EmptySegment));
    assert_eq!(check("table://a://b"), Err(ScopeError::EmptySegment));
    assert_eq!(check("table://ap*"), Err(ScopeError::Wildcard));
    assert_eq!(check("table://***"), Err(ScopeError::Wildcard));
    let many = format!("table://{}", vec!["a"; 33].join("."));
    assert_eq!(check(&many), Err(ScopeError::TooManySegments));
    let most = format!("table://{}", vec!["a"; 32].join("."));
    assert_eq!(check(&most), Ok(()));
}

#[test]
fn lists_split_on_spaces() {
    let v: Vec<_> = split_list(" table://a.b  level://admin ").collect();
    assert_eq!(v, ["table://a.b", "level://admin"]);
    let held = vec!["table://*.**".to_string()];
    let wanted = vec!["table://a.b".to_string(), "level://admin".to_string()];
    assert_eq!(first_not_granted(&wanted, &held), Some("level://admin"));
    assert_eq!(first_not_granted(&wanted[..1], &held), None);
}

#[test]
fn the_challenge_names_every_scope_needed() {
    let c = insufficient_scope_challenge("warden", &["table://a.*".into(), "level://x".into()]);
    let c = c.to_str().unwrap();
    assert!(
        c.starts_with("Bearer realm=\"warden\", error=\"insufficient_scope\""),
        "{c}"
    );
    assert!(c.ends_with("scope=\"table://a.* level://x\""), "{c}");
}

/// Segments drawn from a small alphabet, so wildcards and literals collide often.
fn scope() -> impl Strategy<Value = String> {
    let seg = prop_oneof!["a", "b", "ab", r"\*", r"\*\*", "", "A"];
    let sep = prop_oneof![r"\.", "/"];
    (
        prop_oneof!["t", "T", "u"],
        proptest::collection::vec((sep, seg), 1..6),
    )
        .prop_map(|(scheme, parts)| {
            let mut s = format!("{scheme}://");
            for (i, (sep, seg)) in parts.into_iter().enumerate() {
                if i > 0 {
                    s.push_str(&sep);
                }
                s.push_str(&seg);
            }
            s
        })
}

/// A concrete scope: literal segments only.
fn concrete() -> impl Strategy<Value = String> {
    proptest::collection::vec((prop_oneof![r"\.", "/"], prop_oneof!["a", "b", "ab"]), 1..7)
        .prop_map(|parts| {
            let mut s = "t://".to_string();
            for (i, (sep, seg)) in parts.into_iter().enumerate() {
                if i > 0 {
                    s.push_str(&sep);
                }
                s.push_str(&seg);
            }
            s
        })
}

/// An independent, naive matcher for concrete scopes: `(separator, segment)` units, where a
/// pattern segment `*` takes one unit and `**` one or more.
fn naive(p: &[(char, String)], c: &[(char, String)]) -> bool {
    match p.split_first() {
        None => c.is_empty(),
        Some(((sep, seg), rest)) => {
            let Some(((csep, cseg), crest)) = c.split_first() else {
                return false;
            };
            if sep != csep {
                return false;
            }
            match seg.as_str() {
                "**" => (1..=c.len()).any(|k| naive(rest, &c[k..])),
                "*" => naive(rest, crest),
                lit => lit == cseg && naive(rest, crest),
            }
        }
    }
}

fn units(s: &str) -> Vec<(char, String)> {
    let path = s.split_once("://").unwrap().1;
    let mut out = Vec::new();
    let mut sep = ' ';
    let mut seg = String::new();
    for ch in path.chars() {
        if ch == '.' || ch == '/' {
            out.push((sep, std::mem::take(&mut seg)));
            sep = ch;
        } else {
            seg.push(ch);
        }
    }
    out.push((sep, seg));
    out
}

proptest! {
    #[test]
    fn concrete_matching_agrees_with_a_naive_matcher(held in scope(), c in concrete()) {
        let want = check(&held).is_ok()
            && held.starts_with("t://")
            && naive(&units(&held), &units(&c));
        prop_assert_eq!(grants(&held, &c), want, "{} vs {}", held, c);
    }

    #[test]
    fn matching_never_panics_on_any_input(held in ".{0,300}", wanted in ".{0,300}") {
        let _ = check(&held);
        let _ = grants(&held, &wanted);
    }

    #[test]
    fn a_valid_scope_grants_itself(s in scope()) {
        prop_assert_eq!(grants(&s, &s), check(&s).is_ok());
    }

    /// Soundness of granting a wildcard scope: whatever concrete scope the wanted one
    /// matches, the held one matches too.
    #[test]
    fn granting_is_transitive_through_concrete_scopes(
        held in scope(), wanted in scope(), c in concrete()
    ) {
        if grants(&held, &wanted) && grants(&wanted, &c) {
            prop_assert!(grants(&held, &c), "{held} grants {wanted} grants {c}");
        }
    }
}
