use super::*;
use crate::httpsig::Algorithm;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

const SEED: &str = "n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU";

fn file() -> DevProxyFile {
    DevProxyFile {
        api_url: Some("https://api.example.com".into()),
        client_id: Some("dev".into()),
        key_id: Some("dev-1".into()),
        ..DevProxyFile::default()
    }
}

#[test]
fn settings_take_secrets_from_env_or_files_and_refuse_a_public_listener() {
    let e = env(&[
        (SECRET_ENV, "s3cret"),
        (KEY_ENV, SEED),
        ("MY_SECRET", "other"),
    ]);
    let s = DevProxySettings::resolve(file(), &e).unwrap();
    assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(s.secret, "s3cret");
    assert_eq!(s.key.alg(), Algorithm::Ed25519);
    assert_eq!(s.token_style, TokenStyle::Warden);
    assert!(!format!("{s:?}").contains("s3cret"));
    let named = DevProxyFile {
        client_secret_env: Some("MY_SECRET".into()),
        token_endpoint: Some("/v1/oauth/token".into()),
        ..file()
    };
    let s = DevProxySettings::resolve(named, &e).unwrap();
    assert_eq!(
        (s.secret.as_str(), s.token_style),
        ("other", TokenStyle::OAuth)
    );
    for (change, message) in [
        (
            DevProxyFile {
                listen: Some("0.0.0.0:8787".into()),
                ..file()
            },
            "not a loopback address",
        ),
        (
            DevProxyFile {
                client_secret_env: Some("UNSET".into()),
                ..file()
            },
            "$UNSET",
        ),
        (
            DevProxyFile {
                api_url: Some("api.example.com".into()),
                ..file()
            },
            "api_url",
        ),
        (
            DevProxyFile {
                key_alg: Some("rsa-pss-sha512".into()),
                ..file()
            },
            "key:",
        ),
        (
            DevProxyFile {
                refresh_at: Some(1.0),
                ..file()
            },
            "refresh_at",
        ),
    ] {
        let err = DevProxySettings::resolve(change, &e).unwrap_err();
        assert!(err.contains(message), "{err}");
    }
    let none = env(&[]);
    let err = DevProxySettings::resolve(file(), &none).unwrap_err();
    assert!(err.contains(SECRET_ENV), "{err}");
    let public = DevProxyFile {
        listen: Some("0.0.0.0:0".into()),
        allow_remote: Some(true),
        ..file()
    };
    assert!(DevProxySettings::resolve(public, &e).is_ok());
}

#[test]
fn only_loopback_hosts_and_origins_pass() {
    for ok in [
        "localhost",
        "localhost:8787",
        "127.0.0.1:8787",
        "127.3.4.5",
        "[::1]:8787",
        "[::1]",
    ] {
        assert!(loopback_authority(ok), "{ok}");
    }
    for bad in [
        "",
        "evil.example",
        "evil.example:8787",
        "10.0.0.1:8787",
        "localhost.evil.example",
        "[::2]:80",
    ] {
        assert!(!loopback_authority(bad), "{bad}");
    }
}

#[test]
fn uuids_are_version_4() {
    let u = uuid_v4();
    assert_eq!(u.len(), 36);
    assert_eq!(&u[14..15], "4");
    assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    assert_ne!(u, uuid_v4());
}
