//! `[[clients]]` and their `[[clients.keys]]`: clients declared in config, with their
//! secrets' hashes, address lists, scopes and signing keys.

use std::path::Path;

use super::{ConfigError, RawClient, RawClientKey, invalid, parse_cidrs};
use crate::gate::signature::HmacSecrets;
use crate::issuer::{ClientKey, ClientSettings};
use crate::policy::SignatureMode;
use crate::scope::valid_id;

/// The HMAC secrets declared in `[[clients]]`, for the signature gate.
pub fn hmac_secrets(clients: &[ClientSettings]) -> HmacSecrets {
    clients
        .iter()
        .flat_map(|c| {
            c.keys
                .iter()
                .filter(|k| k.key.alg().is_symmetric())
                .map(|k| ((c.id.clone(), k.id.clone()), k.key.clone()))
        })
        .collect()
}

pub(super) fn validate_clients(clients: &[RawClient]) -> Result<Vec<ClientSettings>, ConfigError> {
    let mut out: Vec<ClientSettings> = Vec::with_capacity(clients.len());
    for (i, c) in clients.iter().enumerate() {
        let key = format!("clients[{i}]");
        if !valid_id(&c.id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("'{}' must be 1-128 of A-Z a-z 0-9 . _ : -", c.id),
            ));
        }
        if out.iter().any(|o| o.id == c.id) {
            return Err(invalid(
                format!("{key}.id"),
                format!("'{}' is declared twice", c.id),
            ));
        }
        let secret_sha256 = crate::secret::parse_sha256_hex(&c.secret_sha256).ok_or_else(|| {
            invalid(
                format!("{key}.secret_sha256"),
                "must be 64 hex digits (sha-256 of the secret)",
            )
        })?;
        let trusted_ips = parse_cidrs(&format!("{key}.trusted_ips"), &c.trusted_ips)?;
        for (j, s) in c.scopes.iter().enumerate() {
            crate::scope::check(s)
                .map_err(|e| invalid(format!("{key}.scopes[{j}]"), format!("'{s}': {e}")))?;
        }
        let mut keys = Vec::with_capacity(c.keys.len());
        for (j, k) in c.keys.iter().enumerate() {
            let kk = format!("{key}.keys[{j}]");
            if !valid_id(&k.id) {
                return Err(invalid(
                    format!("{kk}.id"),
                    format!("'{}' is not a valid key id", k.id),
                ));
            }
            if c.keys[..j].iter().any(|o| o.id == k.id) {
                return Err(invalid(
                    format!("{kk}.id"),
                    format!("'{}' is declared twice", k.id),
                ));
            }
            keys.push(ClientKey {
                id: k.id.clone(),
                key: load_client_key(&kk, k)?,
            });
        }
        out.push(ClientSettings {
            id: c.id.clone(),
            name: c.name.clone().unwrap_or_else(|| c.id.clone()),
            account: c.account.clone().unwrap_or_else(|| c.id.clone()),
            secret_sha256,
            trusted_ips,
            scopes: c.scopes.clone(),
            enabled: c.enabled,
            keys,
            signature: c.signature,
        });
        if c.signature == SignatureMode::Required && c.keys.is_empty() {
            return Err(invalid(
                format!("{key}.signature"),
                "\"required\" needs at least one [[clients.keys]] entry",
            ));
        }
    }
    Ok(out)
}

/// The key of one `[[clients.keys]]` entry: its algorithm, and exactly one source of the
/// key that suits it (a public key inline or in a file; an HMAC secret in a file or an env var).
fn load_client_key(
    kk: &str,
    k: &RawClientKey,
) -> Result<crate::httpsig::VerificationKey, ConfigError> {
    use crate::httpsig::Algorithm;
    let alg = Algorithm::from_name(&k.alg).ok_or_else(|| {
        invalid(
            format!("{kk}.alg"),
            format!("'{}' is not one of {}", k.alg, Algorithm::names()),
        )
    })?;
    let public = k.public_key.is_some() || k.public_key_file.is_some();
    let secret = k.secret_file.is_some() || k.secret_env.is_some();
    let read = |field: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{kk}.{field}"), format!("{}: {e}", path.display())))
    };
    let (field, text) = if alg.is_symmetric() {
        if public {
            return Err(invalid(
                kk,
                "an hmac-sha256 key is a shared secret: never write it in the config; \
                 give it in secret_file or secret_env",
            ));
        }
        match (&k.secret_file, &k.secret_env) {
            (Some(path), None) => ("secret_file", read("secret_file", path)?),
            (None, Some(var)) => (
                "secret_env",
                std::env::var(var).map_err(|_| {
                    invalid(
                        format!("{kk}.secret_env"),
                        format!("${var} is not set (or not UTF-8)"),
                    )
                })?,
            ),
            _ => {
                return Err(invalid(
                    kk,
                    "give the secret in exactly one of secret_file and secret_env",
                ));
            }
        }
    } else {
        if secret {
            return Err(invalid(
                kk,
                format!("{alg} takes a public key (public_key or public_key_file), not a secret"),
            ));
        }
        match (&k.public_key, &k.public_key_file) {
            (Some(text), None) => ("public_key", text.clone()),
            (None, Some(path)) => ("public_key_file", read("public_key_file", path)?),
            _ => {
                return Err(invalid(
                    kk,
                    "give exactly one of public_key and public_key_file",
                ));
            }
        }
    };
    crate::httpsig::parse_verification_key(alg, &text)
        .map_err(|e| invalid(format!("{kk}.{field}"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::raw;

    const ED25519: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    fn client(id: &str, fields: &str) -> String {
        format!(
            "[[clients]]\nid = \"{id}\"\nsecret_sha256 = \"{}\"\n{fields}\n",
            "ab".repeat(32)
        )
    }

    fn refused(toml: &str) -> String {
        validate_clients(&raw(toml).clients)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults() {
        let c = validate_clients(&raw(&client("shop.web", "")).clients).unwrap();
        let c = &c[0];
        assert_eq!(
            (c.name.as_str(), c.account.as_str()),
            ("shop.web", "shop.web")
        );
        assert_eq!(c.secret_sha256, [0xab; 32]);
        assert!(c.enabled && c.trusted_ips.is_empty() && c.scopes.is_empty() && c.keys.is_empty());
        assert_eq!(c.signature, SignatureMode::Auto);
    }

    #[test]
    fn given_values_are_kept_and_keys_parsed() {
        let toml = client(
            "c",
            &format!(
                "name = \"Shop\"\naccount = \"acme\"\nenabled = false\ntrusted_ips = [\"10.0.0.1\"]\n\
                 scopes = [\"level://admin\"]\nsignature = \"required\"\n\
                 [[clients.keys]]\nid = \"k1\"\npublic_key = '''{ED25519}'''\n"
            ),
        );
        let c = &validate_clients(&raw(&toml).clients).unwrap()[0];
        assert_eq!(
            (c.name.as_str(), c.account.as_str(), c.enabled),
            ("Shop", "acme", false)
        );
        assert_eq!(c.trusted_ips[0].to_string(), "10.0.0.1/32");
        assert_eq!(c.keys[0].id, "k1");
        assert_eq!(c.keys[0].key.alg(), crate::httpsig::Algorithm::Ed25519);
        assert_eq!(c.signature, SignatureMode::Required);
    }

    #[test]
    fn each_bad_value_is_refused_by_the_client_and_key() {
        let key =
            |id: &str| format!("[[clients.keys]]\nid = \"{id}\"\npublic_key = '''{ED25519}'''\n");
        for (toml, at) in [
            (client("a b", ""), "clients[0].id"),
            (client("", ""), "clients[0].id"),
            (
                format!("{}{}", client("c", ""), client("c", "")),
                "clients[1].id",
            ),
            (
                "[[clients]]\nid = \"c\"\nsecret_sha256 = \"abcd\"\n".to_owned(),
                "clients[0].secret_sha256",
            ),
            (
                client("c", "trusted_ips = [\"10.0.0.0/8\", \"office\"]"),
                "clients[0].trusted_ips[1]",
            ),
            (client("c", "scopes = [\"a b\"]"), "clients[0].scopes[0]"),
            (client("c", &key("k/1")), "clients[0].keys[0].id"),
            (
                client("c", &format!("{}{}", key("k"), key("k"))),
                "clients[0].keys[1].id",
            ),
            (
                client("c", "signature = \"required\""),
                "clients[0].signature",
            ),
        ] {
            let e = refused(&toml);
            assert!(e.starts_with(&format!("{at}: ")), "{toml}: {e}");
        }
    }
}
