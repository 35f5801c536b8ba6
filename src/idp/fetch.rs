//! The HTTP client Warden uses towards identity providers (JWKS documents, introspection calls):
//! every exchange bounded in time and in the bytes read, redirects never followed, https unless
//! the issuer's configuration allows http (checked when the configuration is read).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why an exchange with an identity provider failed. Logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no complete answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("answered with status {0}")]
    Status(StatusCode),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
}

/// A pooled client for one issuer.
pub struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    max_bytes: usize,
}

impl Fetcher {
    /// A client whose exchanges take at most `timeout` and read at most `max_bytes`.
    pub fn new(timeout: Duration, max_bytes: usize) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(4)
                .build(connector),
            timeout,
            max_bytes,
        }
    }

    /// Sends `req` and reads the answer whole; any status but 200 is an error.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Bytes, FetchError> {
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Transport(error_chain(&e)))?;
            if resp.status() != StatusCode::OK {
                return Err(FetchError::Status(resp.status()));
            }
            let body = Limited::new(resp.into_body(), self.max_bytes);
            body.collect().await.map(|b| b.to_bytes()).map_err(|e| {
                match e.downcast::<http_body_util::LengthLimitError>() {
                    Ok(_) => FetchError::TooLarge(self.max_bytes),
                    Err(e) => FetchError::Transport(e.to_string()),
                }
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(FetchError::Timeout(self.timeout)))
    }
}

/// An error with its sources, for the log ("client error (Connect): tcp connect error: …").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
