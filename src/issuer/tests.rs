use super::clients::is_well_known_secret;
use super::*;
use crate::secret::{self, SecretKind};

#[test]
fn scopes_narrow_to_a_subset_only() {
    let held = vec!["read".to_string(), "write".to_string()];
    assert_eq!(narrow_scopes(None, &held).unwrap(), held);
    assert_eq!(narrow_scopes(Some("read"), &held).unwrap(), ["read"]);
    assert_eq!(
        narrow_scopes(Some("read  read write"), &held).unwrap(),
        ["read", "write"]
    );
    assert_eq!(narrow_scopes(Some("admin"), &held).unwrap_err(), "admin");
    assert_eq!(narrow_scopes(Some("rea"), &held).unwrap_err(), "rea");
}

fn list(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_token_keeps_only_the_scopes_its_client_still_grants() {
    let token = list(&["read", "level://admin", "table://my.app.*"]);
    // The client unchanged: the token unchanged.
    let client = list(&["read", "write", "level://admin", "table://**"]);
    assert_eq!(effective_scopes(&token, &client), token);
    // Narrowed: the admin level and the tables go.
    assert_eq!(effective_scopes(&token, &list(&["read"])), ["read"]);
    assert!(effective_scopes(&token, &[]).is_empty());
    // A wildcard the client narrowed becomes what the client still holds under it.
    let wide = list(&["table://**", "read"]);
    assert_eq!(
        effective_scopes(&wide, &list(&["table://a.*", "write"])),
        ["table://a.*"]
    );
    assert_eq!(
        effective_scopes(&list(&["table://a.*"]), &list(&["table://*.b"])),
        Vec::<String>::new()
    );
    // Never wider than the token, whatever the client gains.
    assert_eq!(
        effective_scopes(
            &list(&["table://a.b"]),
            &list(&["table://**", "table://a.b"])
        ),
        ["table://a.b"]
    );
}

#[test]
fn the_feed_outlives_every_cached_decision() {
    use std::time::Duration;
    let h = |n: u64| Duration::from_secs(n * 3600);
    assert_eq!(feed_retention(Duration::from_secs(300)), h(1));
    assert!(feed_retention(h(1)) > h(1));
    assert!(feed_retention(h(48)) > h(48));
    assert_eq!(feed_retention(Duration::MAX), Duration::MAX);
}

#[test]
fn well_known_secrets_are_recognised_by_their_hash() {
    let demo = secret::parse_sha256_hex(
        "cd577fe2561ebff23505db0bb006300c7cdecbd46bc0e03c449afafaca2c25bf",
    )
    .unwrap();
    assert!(is_well_known_secret(&demo));
    assert!(!is_well_known_secret(
        &secret::mint(SecretKind::ClientSecret).hash
    ));
}

#[test]
fn scopes_narrow_through_wildcards() {
    let held = vec!["table://*.**".to_string(), "level://admin".to_string()];
    assert_eq!(
        narrow_scopes(Some("table://a.b table://a.*"), &held).unwrap(),
        ["table://a.b", "table://a.*"]
    );
    assert_eq!(
        narrow_scopes(Some("table://a"), &held).unwrap_err(),
        "table://a"
    );
    assert_eq!(
        narrow_scopes(Some("level://root"), &held).unwrap_err(),
        "level://root"
    );
    assert_eq!(
        narrow_scopes(Some("table://a..b"), &held).unwrap_err(),
        "table://a..b"
    );
}
