//! Whole-configuration tests through the loader (`Settings::from_toml`); each section's own
//! refusals and defaults are tested beside its validation.

use std::path::Path;
use std::time::Duration;

use crate::policy::SignatureMode;

use super::*;

fn err(toml: &str) -> String {
    Settings::from_toml(toml).unwrap_err().to_string()
}

#[test]
fn defaults_alone_are_valid_and_deny_everything() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    assert!(s.routes.is_empty());
}

#[test]
fn unknown_key_is_named() {
    let e = err("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n");
    assert!(e.contains("listen_port"), "{e}");
}

#[test]
fn bad_address_is_named() {
    assert!(err("[server]\nlisten = \"nope\"\n").starts_with("server.listen:"));
}

#[test]
fn bad_cidr_is_named_with_its_index() {
    let e = err("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/99\"]\n");
    assert!(e.starts_with("server.trusted_proxies[1]:"), "{e}");
}

#[test]
fn bare_address_is_a_host_cidr() {
    let s = Settings::from_toml("[server]\ntrusted_proxies = [\"10.1.2.3\", \"::1\"]\n").unwrap();
    assert_eq!(s.server.trusted_proxies[0].to_string(), "10.1.2.3/32");
    assert_eq!(s.server.trusted_proxies[1].to_string(), "::1/128");
}

#[test]
fn upstream_without_scheme_is_refused() {
    assert!(err("[upstream]\nurl = \"127.0.0.1:3000\"\n").starts_with("upstream.url:"));
}

#[test]
fn bad_duration_names_the_key() {
    let e = err("[upstream]\ntimeout = \"soon\"\n");
    assert!(e.contains("upstream.timeout"), "{e}");
}

#[test]
fn route_errors_name_the_route() {
    let e = err(
        "[[routes]]\npath = \"/a\"\nauth = \"none\"\n[[routes]]\npath = \"x\"\nauth = \"none\"\n",
    );
    assert!(e.starts_with("routes[1].path:"), "{e}");
    let e = err("[[routes]]\npath = \"/a\"\nauth = \"magic\"\n");
    assert!(e.contains("auth"), "{e}");
}

#[test]
fn routes_ignore_ascii_case_unless_told_otherwise() {
    let route = "[[routes]]\npath = \"/api/admin/**\"\nauth = \"none\"\n";
    let s = Settings::from_toml(route).unwrap();
    assert!(s.router.case_insensitive);
    assert!(s.routes[0].pattern.matches("/API/Admin/x"));
    let s = Settings::from_toml(&format!("[router]\ncase_insensitive = false\n{route}")).unwrap();
    assert!(!s.routes[0].pattern.matches("/API/Admin/x"));
    assert!(s.routes[0].pattern.matches("/api/admin/x"));
    let e = err("[[routes]]\npath = \"/café\"\nauth = \"none\"\n");
    assert!(
        e.starts_with("routes[0].path:") && e.contains("case_insensitive"),
        "{e}"
    );
    Settings::from_toml(
        "[router]\ncase_insensitive = false\n[[routes]]\npath = \"/café\"\nauth = \"none\"\n",
    )
    .unwrap();
    let e = err("[[routes]]\npath = \"/public/..;/x\"\nauth = \"none\"\n");
    assert!(
        e.starts_with("routes[0].path:") && e.contains("never match"),
        "{e}"
    );
}

#[test]
fn route_scopes_and_token_api_keys_are_validated() {
    let e = err("[[routes]]\npath = \"/a\"\nauth = \"none\"\nscopes = [\"x://a\"]\n");
    assert!(e.starts_with("routes[0].scopes:"), "{e}");
    let e =
        err("[[routes]]\npath = \"/a\"\nauth = \"bearer\"\nscopes = [\"x://a\", \"x://a..b\"]\n");
    assert!(e.starts_with("routes[0].scopes[1]:"), "{e}");
    let e = err("[[routes]]\npath = \"/a\"\nauth = \"bearer\"\naudience = \"a b\"\n");
    assert!(e.starts_with("routes[0].audience:"), "{e}");
    assert!(err("[tokens]\nadmin_scope = \"\"\n").starts_with("tokens.admin_scope:"));
    assert!(err("[tokens]\nmax_name_length = 0\n").starts_with("tokens.max_name_length:"));
    let e = err("[endpoints]\ntokens = \"/ws/tokens\"\n");
    assert!(e.starts_with("endpoints.tokens:"), "{e}");
    let s = Settings::from_toml("[endpoints]\ntokens = \"\"\n").unwrap();
    assert!(s.endpoints.tokens.is_none());
}

#[test]
fn signature_settings_default_to_auto_and_are_validated() {
    let s = Settings::from_toml("[[routes]]\npath = \"/a\"\nauth = \"bearer\"\n").unwrap();
    assert_eq!(s.routes[0].policy.signature, SignatureMode::Auto);
    assert_eq!(s.signatures.max_age, Duration::from_secs(300));
    assert_eq!(s.signatures.cover_if_present.len(), 4);
    let e = err("[[routes]]\npath = \"/a\"\nauth = \"none\"\nsignature = \"required\"\n");
    assert!(e.starts_with("routes[0].signature:"), "{e}");
    let e = err("[signatures]\ncover_always = [\"Content-Type\"]\n");
    assert!(e.starts_with("signatures.cover_always[0]:"), "{e}");
    let e = err("[signatures]\ncover_always = [\"@status\"]\n");
    assert!(e.starts_with("signatures.cover_always[0]:"), "{e}");
    let e = err("[signatures]\nnonce = \"sometimes\"\n");
    assert!(e.contains("signatures.nonce"), "{e}");
    assert_eq!(s.signatures.nonce_cache_per_client, 50_000, "a quarter");
    let s = Settings::from_toml("[signatures]\nnonce_cache_capacity = 3\n").unwrap();
    assert_eq!(s.signatures.nonce_cache_per_client, 1);
    let e = err("[signatures]\nnonce_cache_capacity = 9\nnonce_cache_per_client = 10\n");
    assert!(e.starts_with("signatures.nonce_cache_per_client:"), "{e}");
}

#[test]
fn public_urls_are_parsed_once_with_their_prefix() {
    let s = Settings::from_toml(
        "[signatures]\npublic_url = \"https://API.example.com:8443/payments/\"\n\
         [[routes]]\npath = \"/a\"\nauth = \"bearer\"\npublic_url = \"http://b.example\"\n",
    )
    .unwrap();
    let global = s.signatures.public_url.unwrap();
    assert_eq!(
        (
            global.scheme.as_str(),
            global.authority.as_str(),
            global.prefix.as_str()
        ),
        ("https", "API.example.com:8443", "/payments")
    );
    assert_eq!(s.routes[0].policy.public_url.as_ref().unwrap().prefix, "");
    for bad in [
        "api.example.com",
        "ftp://a.example",
        "https://a.example/?q=1",
        "https://",
    ] {
        let e = err(&format!("[signatures]\npublic_url = {bad:?}\n"));
        assert!(e.starts_with("signatures.public_url:"), "{bad}: {e}");
    }
}

#[test]
fn a_client_required_to_sign_needs_a_key_and_address_lists_are_cidrs() {
    let e = err(
        "[[clients]]\nid = \"c\"\nsignature = \"required\"\nsecret_sha256 = \"\
         0000000000000000000000000000000000000000000000000000000000000000\"\n",
    );
    assert!(e.starts_with("clients[0].signature:"), "{e}");
    let e = err("[server]\ndeny_ips = [\"10.0.0.0/33\"]\n");
    assert!(e.starts_with("server.deny_ips[0]:"), "{e}");
    let s =
        Settings::from_toml("[server]\nallow_ips = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n").unwrap();
    assert_eq!(s.server.allow_ips.len(), 2);
}

#[test]
fn connection_and_body_limits_have_defaults_and_zero_turns_the_optional_ones_off() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.server.body_read_timeout, Some(Duration::from_secs(30)));
    assert_eq!(s.server.http2_idle_timeout, Duration::from_secs(60));
    assert_eq!(
        s.server.http2_keep_alive_interval,
        Some(Duration::from_secs(30))
    );
    assert_eq!(s.server.max_connections_per_ip, Some(256));
    assert_eq!(s.idempotency.buffer_budget_bytes, 64 << 20);
    let s = Settings::from_toml(
        "[server]
body_read_timeout = \"0s\"
http2_keep_alive_interval = \"0s\"
\
         max_connections_per_ip = 0
",
    )
    .unwrap();
    assert_eq!(s.server.body_read_timeout, None);
    assert_eq!(s.server.http2_keep_alive_interval, None);
    assert_eq!(s.server.max_connections_per_ip, None);
    let e = err("[server]
http2_idle_timeout = \"0s\"
");
    assert!(e.starts_with("server.http2_idle_timeout:"), "{e}");
    let e = err("[idempotency]
max_request_bytes = 2000
buffer_budget_bytes = 1000
");
    assert!(e.starts_with("idempotency.buffer_budget_bytes:"), "{e}");
    let e = err("[idempotency]
request_read_timeout = \"0s\"
");
    assert!(e.starts_with("idempotency.request_read_timeout:"), "{e}");
}

#[test]
fn client_keys_take_one_source_that_suits_their_algorithm() {
    const P256: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf\nw0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==\n-----END PUBLIC KEY-----\n";
    const SECRET: &str =
        "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let pem = dir.path().join("p256.pem");
    std::fs::write(&pem, P256).unwrap();
    let client = |key: &str| {
        format!(
            "[[clients]]\nid = \"c\"\nsecret_sha256 = \"{}\"\n[[clients.keys]]\nid = \"k\"\n{key}\n",
            "0".repeat(64)
        )
    };
    let ok = |key: &str| {
        Settings::from_toml(&client(key))
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .clients[0]
            .keys[0]
            .key
            .alg()
    };
    use crate::httpsig::Algorithm;
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    assert_eq!(
        ok(&format!(
            "alg = \"hmac-sha256\"\nsecret_file = {}",
            path(&secret)
        )),
        Algorithm::HmacSha256
    );
    assert_eq!(
        ok(&format!(
            "alg = \"ecdsa-p256-sha256\"\npublic_key_file = {}",
            path(&pem)
        )),
        Algorithm::EcdsaP256Sha256
    );
    assert_eq!(
        ok(&format!(
            "alg = \"ecdsa-p256-sha256\"\npublic_key = '''{P256}'''"
        )),
        Algorithm::EcdsaP256Sha256
    );
    let cases = [
        (
            "alg = \"hs256\"\npublic_key = \"x\"".to_owned(),
            "clients[0].keys[0].alg:",
            "rsa-pss-sha512",
        ),
        (
            format!("alg = \"hmac-sha256\"\npublic_key = \"{SECRET}\""),
            "clients[0].keys[0]:",
            "never write it in the config",
        ),
        (
            "alg = \"hmac-sha256\"\nsecret_env = \"WARDEN_TEST_SURELY_UNSET_VARIABLE\"".into(),
            "clients[0].keys[0].secret_env:",
            "is not set",
        ),
        // A variable that is set but holds no base64 secret: it was read.
        (
            "alg = \"hmac-sha256\"\nsecret_env = \"PATH\"".into(),
            "clients[0].keys[0].secret_env:",
            "base64",
        ),
        (
            "alg = \"hmac-sha256\"".into(),
            "clients[0].keys[0]:",
            "exactly one of secret_file and secret_env",
        ),
        (
            "alg = \"ed25519\"\nsecret_env = \"PATH\"".into(),
            "clients[0].keys[0]:",
            "takes a public key",
        ),
        (
            "alg = \"ed25519\"".into(),
            "clients[0].keys[0]:",
            "exactly one of public_key",
        ),
        (
            "alg = \"ecdsa-p256-sha256\"\npublic_key_file = \"/nonexistent/key.pem\"".into(),
            "clients[0].keys[0].public_key_file:",
            "/nonexistent/key.pem",
        ),
        (
            format!("alg = \"ecdsa-p384-sha384\"\npublic_key = '''{P256}'''"),
            "clients[0].keys[0].public_key:",
            "p-256",
        ),
    ];
    for (key, starts, contains) in cases {
        let e = err(&client(&key));
        assert!(e.starts_with(starts) && e.contains(contains), "{key}: {e}");
        assert!(!e.contains(&SECRET[..12]), "{e}");
    }
}

#[test]
fn the_upstream_body_idle_timeout_defaults_to_five_minutes_and_zero_turns_it_off() {
    let s = Settings::from_toml("").unwrap();
    assert_eq!(s.upstream.body_idle_timeout, Some(Duration::from_secs(300)));
    let s = Settings::from_toml("[upstream]\nbody_idle_timeout = \"0s\"\n").unwrap();
    assert_eq!(s.upstream.body_idle_timeout, None);
}
