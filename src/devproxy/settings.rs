//! The dev proxy's settings: its TOML file (`--file`), the command line over it, and where
//! the secrets come from (files or environment variables, never the command line).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::Uri;
use serde::Deserialize;

use crate::digest::Algorithm as DigestAlgorithm;
use crate::httpsig::{self, Algorithm, MessageSigner, SignerKey};

/// Where the dev proxy listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// The environment variable read for the client secret when no other source is named.
pub const SECRET_ENV: &str = "WARDEN_DEV_CLIENT_SECRET";
/// The environment variable read for the private key (its text) when no other source is named.
pub const KEY_ENV: &str = "WARDEN_DEV_KEY";

/// The dev proxy's TOML file (`--file`); every key is optional, and a command-line flag of the
/// same name wins. Secrets only by file or environment variable.
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevProxyFile {
    /// `127.0.0.1:8787` by default.
    pub listen: Option<String>,
    /// The Warden-protected API, e.g. `https://api.example.com` (required).
    pub api_url: Option<String>,
    /// The URL Warden checks signatures against (its `public_url`), when it differs from
    /// `api_url` (a tunnel, a port forward); default `api_url`.
    pub sign_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
    pub key_id: Option<String>,
    /// Default: what the key says (ed25519, ECDSA); required for RSA and HMAC keys.
    pub key_alg: Option<String>,
    /// `/v1/auth` (default) or `/v1/oauth/token`.
    pub token_endpoint: Option<String>,
    /// `warden` (form clientId/clientSecret, the default) or `oauth` (client credentials with
    /// HTTP Basic; the default when the endpoint ends in `/oauth/token`).
    pub token_style: Option<String>,
    /// Scopes to ask for (space-separated); default all of the client's.
    pub scope: Option<String>,
    /// `sha-256` or `sha-512` (default).
    pub digest: Option<String>,
    /// Largest body buffered to digest and sign (default 10 MiB).
    pub max_body_bytes: Option<usize>,
    /// Add a random nonce to every signature (default false).
    pub nonce: Option<bool>,
    /// Fraction of the token's lifetime after which it is refreshed (default 0.8).
    pub refresh_at: Option<f64>,
    /// Listen on a non-loopback address and accept any Host (default false).
    pub allow_remote: Option<bool>,
}

impl DevProxyFile {
    /// `overrides`' keys that are set win over `self`'s.
    pub fn merge(self, overrides: DevProxyFile) -> DevProxyFile {
        macro_rules! pick {
            ($($f:ident),*) => { DevProxyFile { $($f: overrides.$f.or(self.$f)),* } };
        }
        pick!(
            listen,
            api_url,
            sign_url,
            client_id,
            client_secret_file,
            client_secret_env,
            key_file,
            key_env,
            key_id,
            key_alg,
            token_endpoint,
            token_style,
            scope,
            digest,
            max_body_bytes,
            nonce,
            refresh_at,
            allow_remote
        )
    }
}

/// How the token endpoint is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStyle {
    /// Warden's `POST /v1/auth`: form `clientId`, `clientSecret`; 201 `accessToken`, `expiresIn`.
    Warden,
    /// RFC 6749 client credentials: HTTP Basic; 200 `access_token`, `expires_in`.
    OAuth,
}

/// The dev proxy's settings, validated; the secret and the key are loaded.
pub struct DevProxySettings {
    pub listen: SocketAddr,
    pub api_url: Uri,
    pub sign_url: Uri,
    pub client_id: String,
    pub(super) secret: String,
    pub key: Arc<SignerKey>,
    pub key_id: String,
    pub token_endpoint: String,
    pub token_style: TokenStyle,
    pub scope: Option<String>,
    pub digest: DigestAlgorithm,
    pub max_body_bytes: usize,
    pub nonce: bool,
    pub refresh_at: f64,
    pub allow_remote: bool,
}

impl std::fmt::Debug for DevProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevProxySettings")
            .field("listen", &self.listen)
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("key_id", &self.key_id)
            .field("alg", &self.key.alg())
            .finish_non_exhaustive()
    }
}

/// Reads a secret from a file or an environment variable (`env` looks variables up).
fn secret_source(
    what: &str,
    file: Option<&PathBuf>,
    var: Option<&String>,
    default_var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    match (file, var) {
        (Some(_), Some(_)) => Err(format!("give the {what} in a file or an env var, not both")),
        (Some(path), None) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("cannot read the {what} from {}: {e}", path.display())),
        (None, Some(var)) => env(var).ok_or_else(|| format!("${var} (the {what}) is not set")),
        (None, None) => env(default_var).ok_or_else(|| {
            format!(
                "no {what}: name a file (--{0}-file) or an env var (--{0}-env), or set ${default_var}",
                if what == "client secret" { "client-secret" } else { "key" }
            )
        }),
    }
}

impl DevProxySettings {
    /// Validates `file` (its keys merged with the command line's), reading the secret and the
    /// key through `env` (the process environment in production).
    pub fn resolve(
        file: DevProxyFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let listen: SocketAddr = file
            .listen
            .as_deref()
            .unwrap_or(DEFAULT_LISTEN)
            .parse()
            .map_err(|_| "listen must be an address:port like 127.0.0.1:8787".to_owned())?;
        let allow_remote = file.allow_remote.unwrap_or(false);
        if !listen.ip().is_loopback() && !allow_remote {
            return Err(format!(
                "listen {listen} is not a loopback address: the dev proxy signs and authorises \
                 whatever reaches it; set allow_remote = true (--allow-remote) to do it anyway"
            ));
        }
        let absolute = |key: &str, text: &str| -> Result<Uri, String> {
            let uri: Uri = text
                .trim_end_matches('/')
                .parse()
                .map_err(|_| format!("{key} {text:?} is not a URL"))?;
            match (uri.scheme_str(), uri.authority(), uri.query()) {
                (Some("http" | "https"), Some(_), None) => Ok(uri),
                _ => Err(format!("{key} must be http(s)://host[:port][/prefix]")),
            }
        };
        let api_text = file
            .api_url
            .as_deref()
            .ok_or("api_url is required (--api-url)")?;
        let api_url = absolute("api_url", api_text)?;
        let sign_url = match file.sign_url.as_deref() {
            Some(text) => absolute("sign_url", text)?,
            None => api_url.clone(),
        };
        let client_id = file
            .client_id
            .clone()
            .ok_or("client_id is required (--client-id)")?;
        let secret = secret_source(
            "client secret",
            file.client_secret_file.as_ref(),
            file.client_secret_env.as_ref(),
            SECRET_ENV,
            env,
        )?;
        if secret.is_empty() {
            return Err("the client secret is empty".into());
        }
        let alg =
            match file.key_alg.as_deref() {
                None => None,
                Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
                    format!("key_alg {name:?} is not one of {}", Algorithm::names())
                })?),
            };
        let key_text = secret_source(
            "key",
            file.key_file.as_ref(),
            file.key_env.as_ref(),
            KEY_ENV,
            env,
        )?;
        let key = httpsig::parse_signer_key(&key_text, alg).map_err(|e| format!("key: {e}"))?;
        let key_id = file
            .key_id
            .clone()
            .ok_or("key_id is required (--key-id): the keyid registered with Warden")?;
        let token_endpoint = file
            .token_endpoint
            .clone()
            .unwrap_or_else(|| "/v1/auth".into());
        if !token_endpoint.starts_with('/') {
            return Err("token_endpoint must be a path like /v1/auth".into());
        }
        let token_style = match file.token_style.as_deref() {
            Some("warden") => TokenStyle::Warden,
            Some("oauth") => TokenStyle::OAuth,
            Some(other) => return Err(format!("token_style {other:?} is not warden or oauth")),
            None if token_endpoint.ends_with("/oauth/token") => TokenStyle::OAuth,
            None => TokenStyle::Warden,
        };
        let digest = match file.digest.as_deref() {
            None => DigestAlgorithm::Sha512,
            Some(name) => DigestAlgorithm::from_name(name)
                .ok_or_else(|| format!("digest {name:?} is not sha-256 or sha-512"))?,
        };
        let refresh_at = file.refresh_at.unwrap_or(0.8);
        if !(0.1..=0.95).contains(&refresh_at) {
            return Err("refresh_at must be between 0.1 and 0.95 (of the token's lifetime)".into());
        }
        let max_body_bytes = file.max_body_bytes.unwrap_or(10 << 20);
        if max_body_bytes == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        Ok(Self {
            listen,
            api_url,
            sign_url,
            client_id,
            secret,
            key: Arc::new(key),
            key_id,
            token_endpoint,
            token_style,
            scope: file.scope.clone().filter(|s| !s.trim().is_empty()),
            digest,
            max_body_bytes,
            nonce: file.nonce.unwrap_or(false),
            refresh_at,
            allow_remote,
        })
    }
}

/// Reads the dev proxy's TOML file.
pub fn read_file(path: &std::path::Path) -> Result<DevProxyFile, String> {
    use figment::providers::Format as _;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    figment::Figment::from(figment::providers::Serialized::defaults(
        DevProxyFile::default(),
    ))
    .merge(figment::providers::Toml::string(&text))
    .extract()
    .map_err(|e| format!("{}: {e}", path.display()))
}
