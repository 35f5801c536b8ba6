//! `warden dev-proxy`: a local HTTP listener for development that takes plain requests (curl,
//! a browser, an SDK that cannot sign) and forwards them to a Warden-protected API, adding what
//! the API demands:
//!
//! - an access token from the API's token endpoint (`/v1/auth`, or `/v1/oauth/token`), got with
//!   the developer's client id and secret, refreshed at `refresh_at` of its lifetime and once
//!   on a 401 `invalid_token` (the request is then sent again), one refresh at a time;
//! - `X-Client-Id`, and on a POST without one an `Idempotency-Key` (a random UUID);
//! - the body's `Content-Digest` (the body is buffered to digest it, up to `max_body_bytes`);
//! - an RFC 9421 signature with the developer's key over what Warden requires by default
//!   ([`httpsig::default_components`]), with `created`, `keyid`, `alg` and a nonce if asked.
//!
//! It attaches credentials to whatever reaches it, so it listens on loopback only unless told
//! otherwise (and then warns), refuses requests whose `Host` is not a loopback name (DNS
//! rebinding) or that a web page of another origin sent (`Origin`), and takes its secrets from
//! files or environment variables, never from the command line.

pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;

use crate::body::{Body, BoxError};
use crate::clock::Clock;
use crate::digest::Algorithm as DigestAlgorithm;
use crate::httpsig::{self, Algorithm, MessageSigner, SignOptions, SignerKey};
use token::{Issued, TokenCache};

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
    secret: String,
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

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A running dev proxy's state.
pub struct DevProxy {
    settings: DevProxySettings,
    client: HttpsClient,
    tokens: TokenCache,
    clock: Clock,
}

impl DevProxy {
    pub fn new(settings: DevProxySettings, clock: Clock) -> Arc<Self> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Arc::new(Self {
            tokens: TokenCache::new(clock.clone(), settings.refresh_at),
            settings,
            client,
            clock,
        })
    }

    pub fn settings(&self) -> &DevProxySettings {
        &self.settings
    }

    /// How many access tokens were obtained so far.
    pub fn tokens_fetched(&self) -> u64 {
        self.tokens.fetched()
    }

    /// Binds the listener and serves in a task; returns the bound address.
    pub async fn start(
        self: &Arc<Self>,
    ) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(self.settings.listen).await?;
        let addr = listener.local_addr()?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let this = this.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let this = this.clone();
                        async move { Ok::<_, std::convert::Infallible>(this.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok((addr, task))
    }

    /// One request from the developer's tool, forwarded with credentials.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(refusal) = self.refuse_foreign(req.headers()) {
            return refusal;
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, self.settings.max_body_bytes)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "devproxy_body_too_large",
                    &format!(
                        "the dev proxy buffers a body to digest and sign it, up to {} bytes \
                         (max_body_bytes)",
                        self.settings.max_body_bytes
                    ),
                );
            }
            Err(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "devproxy_body_unreadable",
                    "the request body could not be read",
                );
            }
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let mut headers = parts.headers;
        strip_for_forwarding(&mut headers);
        if parts.method == Method::POST
            && !headers.contains_key("idempotency-key")
            && !headers.contains_key("x-idempotency-key")
        {
            let value = format!("\"{}\"", uuid_v4());
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static("idempotency-key"), v);
            }
        }
        let mut stale = None;
        loop {
            let token = match self.token(stale).await {
                Ok(token) => token,
                Err(detail) => {
                    return problem(StatusCode::BAD_GATEWAY, "devproxy_token_failed", &detail);
                }
            };
            let outgoing = match self.signed(
                &parts.method,
                &path,
                headers.clone(),
                &body,
                Some(&token.value),
            ) {
                Ok(req) => req,
                Err(detail) => {
                    return problem(StatusCode::BAD_REQUEST, "devproxy_cannot_sign", &detail);
                }
            };
            let resp = match self.client.request(outgoing).await {
                Ok(resp) => resp,
                Err(e) => {
                    tracing::warn!(error = %e, "the API could not be reached");
                    return problem(
                        StatusCode::BAD_GATEWAY,
                        "devproxy_api_unreachable",
                        "the API (api_url) could not be reached; see the dev proxy's log",
                    );
                }
            };
            // A token the API no longer takes (expired early, revoked): one new token, one retry.
            if resp.status() == StatusCode::UNAUTHORIZED
                && stale.is_none()
                && invalid_token(resp.headers())
            {
                tracing::info!(
                    "the API refused the access token: getting a new one and sending again"
                );
                stale = Some(token.generation);
                continue;
            }
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed());
        }
    }

    /// A 403 for a request a foreign web page or a rebinding DNS name could have sent.
    fn refuse_foreign(&self, headers: &HeaderMap) -> Option<Response<Body>> {
        if self.settings.allow_remote {
            return None;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_authority(host) {
            return Some(problem(
                StatusCode::FORBIDDEN,
                "devproxy_host_refused",
                "the dev proxy answers only requests whose Host is a loopback name or \
                 address (a DNS name pointing here could be a rebinding attack)",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            if origin == "null" || !loopback_authority(authority) {
                return Some(problem(
                    StatusCode::FORBIDDEN,
                    "devproxy_origin_refused",
                    "the dev proxy does not attach credentials to requests from web pages of \
                     other origins",
                ));
            }
        }
        None
    }

    async fn token(&self, stale: Option<u64>) -> Result<token::Token, String> {
        self.tokens.get(stale, || self.fetch_token()).await
    }

    /// Asks the token endpoint for a new access token.
    async fn fetch_token(&self) -> Result<Issued, String> {
        let s = &self.settings;
        let (headers, body) = self.token_request()?;
        let req = self
            .signed(&Method::POST, &s.token_endpoint, headers, &body, None)
            .map_err(|e| format!("the token request cannot be signed: {e}"))?;
        let resp = self.client.request(req).await.map_err(|_| {
            format!(
                "the token endpoint {}{} could not be reached",
                s.api_url, s.token_endpoint
            )
        })?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let (ok, token, expires) = match s.token_style {
            TokenStyle::Warden => (StatusCode::CREATED, "accessToken", "expiresIn"),
            TokenStyle::OAuth => (StatusCode::OK, "access_token", "expires_in"),
        };
        if status != ok {
            // The problem's code (or OAuth's error), never the body as a whole.
            let code = json["code"]
                .as_str()
                .or(json["error"].as_str())
                .unwrap_or("-");
            let detail = json["detail"]
                .as_str()
                .or(json["error_description"].as_str())
                .unwrap_or("");
            return Err(format!(
                "the token endpoint {} answered {status} ({code}): {detail}",
                s.token_endpoint
            ));
        }
        let value = json[token]
            .as_str()
            .ok_or_else(|| format!("the token endpoint's answer has no {token}"))?;
        tracing::info!(
            expires_in = json[expires].as_u64().unwrap_or(0),
            "access token obtained"
        );
        Ok(Issued {
            value: value.to_owned(),
            expires_in: json[expires].as_u64().unwrap_or(0),
        })
    }

    /// The token request's headers and form (no await here: the form builder is not `Send`).
    fn token_request(&self) -> Result<(HeaderMap, Bytes), String> {
        let s = &self.settings;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let mut form = form_urlencoded::Serializer::new(String::new());
        match s.token_style {
            TokenStyle::Warden => {
                form.append_pair("clientId", &s.client_id);
                form.append_pair("clientSecret", &s.secret);
                // A signed POST /v1/auth needs a key; a retry would return the same token.
                if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", uuid_v4())) {
                    headers.insert(HeaderName::from_static("idempotency-key"), v);
                }
            }
            TokenStyle::OAuth => {
                use base64::Engine as _;
                form.append_pair("grant_type", "client_credentials");
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    enc(&s.client_id),
                    enc(&s.secret)
                ));
                let value = HeaderValue::from_str(&format!("Basic {basic}"))
                    .map_err(|_| "the client id or secret cannot be sent".to_owned())?;
                headers.insert(header::AUTHORIZATION, value);
            }
        }
        if let Some(scope) = &s.scope {
            form.append_pair("scope", scope);
        }
        Ok((headers, Bytes::from(form.finish())))
    }

    /// The request to `path` on the API: the token, `X-Client-Id`, `Content-Digest` and the
    /// signature over the URL Warden checks (`sign_url`).
    fn signed(
        &self,
        method: &Method,
        path: &str,
        mut headers: HeaderMap,
        body: &Bytes,
        token: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, String> {
        let s = &self.settings;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| "the access token is not a header value".to_owned())?;
            headers.insert(header::AUTHORIZATION, value);
        }
        let client_id = HeaderValue::from_str(&s.client_id)
            .map_err(|_| "the client id is not a header value".to_owned())?;
        headers.insert(HeaderName::from_static("x-client-id"), client_id);
        let join = |base: &Uri| format!("{}{path}", base.to_string().trim_end_matches('/'));
        let url: Uri = join(&s.api_url)
            .parse()
            .map_err(|_| format!("{path:?} is not a path"))?;
        let sign_url: Uri = join(&s.sign_url)
            .parse()
            .map_err(|_| format!("{path:?} is not a path"))?;
        let nonce = s.nonce.then(|| hex::encode(rand::random::<[u8; 16]>()));
        let opts = SignOptions {
            nonce: nonce.as_deref(),
            digest: s.digest,
            ..SignOptions::new(&s.key_id, self.clock.now())
        };
        httpsig::sign_request(
            method.as_str(),
            &sign_url,
            &mut headers,
            body,
            &opts,
            s.key.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(url)
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        *req.headers_mut() = headers;
        Ok(req)
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

/// `warden dev-proxy`: serves until Ctrl-C.
pub fn run(settings: DevProxySettings) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        crate::telemetry::init(&crate::config::RawLog::default());
        if !settings.listen.ip().is_loopback() {
            let line = "!".repeat(78);
            eprintln!(
                "{line}\nwarden dev-proxy listens on {}: ANYONE who can reach it calls the API \
                 as {} with your key.\n{line}",
                settings.listen, settings.client_id
            );
            tracing::warn!(listen = %settings.listen, "dev proxy reachable beyond loopback");
        }
        let proxy = DevProxy::new(settings, Clock::default());
        let (addr, task) = proxy
            .start()
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", proxy.settings.listen))?;
        let s = proxy.settings();
        eprintln!(
            "warden dev-proxy: http://{addr} -> {} as client {} (key {}, {})\n\
             try: curl http://{addr}/your/path",
            s.api_url,
            s.client_id,
            s.key_id,
            s.key.alg()
        );
        let _ = tokio::signal::ctrl_c().await;
        task.abort();
        Ok(())
    })
}

/// Headers of the developer's request that are the dev proxy's to set, or the connection's.
fn strip_for_forwarding(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
    for name in [
        header::HOST,
        header::AUTHORIZATION,
        header::CONTENT_LENGTH,
        header::ORIGIN,
        HeaderName::from_static("x-client-id"),
        HeaderName::from_static("signature-input"),
        HeaderName::from_static("signature"),
        HeaderName::from_static("content-digest"),
    ] {
        headers.remove(name);
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Whether a 401 says the bearer token is not (or no longer) accepted (RFC 6750 §3.1).
fn invalid_token(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("error=\"invalid_token\""))
}

/// `localhost`, a 127/8 address or `[::1]`, with or without a port.
fn loopback_authority(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':') => {
            host
        }
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or(""),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    let mut resp = Response::new(crate::body::full(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
