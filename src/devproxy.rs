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
//!
//! Its settings (the file, the flags over it, the secrets' sources) are in `settings.rs`, the
//! token cache in `token.rs`; this file is the proxy itself.

mod settings;
pub mod token;

pub use self::settings::{
    DEFAULT_LISTEN, DevProxyFile, DevProxySettings, KEY_ENV, SECRET_ENV, TokenStyle, read_file,
};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::body::{Body, BoxError};
use crate::clock::Clock;
use crate::httpsig::{self, MessageSigner, SignOptions};
use token::{Issued, TokenCache};

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

/// `warden dev-proxy`: serves until Ctrl-C.
pub fn run(settings: DevProxySettings) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        crate::telemetry::init(&crate::telemetry::LogSettings::default());
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
    for name in crate::forward::HOP_BY_HOP.iter().chain([&header::UPGRADE]) {
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
mod tests;
