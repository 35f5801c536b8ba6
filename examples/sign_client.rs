//! A client of a signed API behind Warden: gets an access token from `POST /v1/auth` and calls
//! a bearer route, both signed with RFC 9421 (ed25519) and carrying an RFC 9530
//! `Content-Digest`, through the same code Warden verifies with (`warden::httpsig::sign_request`).
//!
//! ```sh
//! warden keygen --out dev.pem --keyid dev-1        # add the printed [[clients.keys]] to a client
//! cargo run --example sign_client -- --client demo-client --secret demo-secret \
//!     --key dev.pem --keyid dev-1 --url http://127.0.0.1:8080 --path /api/orders
//! ```

use bytes::Bytes;
use clap::Parser;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use warden::httpsig::{self, SignOptions};

#[derive(Parser)]
struct Args {
    /// Warden's URL as the client calls it (the `public_url` behind a load balancer).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long)]
    client: String,
    #[arg(long)]
    secret: String,
    /// The private key (PKCS#8 PEM from `warden keygen`).
    #[arg(long)]
    key: std::path::PathBuf,
    #[arg(long)]
    keyid: String,
    /// The bearer route to call.
    #[arg(long, default_value = "/api/orders")]
    path: String,
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// Signs and sends one request; returns the status and the body.
#[allow(clippy::too_many_arguments)]
async fn send(
    client: &HttpClient,
    key: &ed25519_dalek::SigningKey,
    keyid: &str,
    method: Method,
    url: &str,
    mut headers: HeaderMap,
    body: &[u8],
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let uri: Uri = url.parse()?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let opts = SignOptions {
        expires: Some(created + 60),
        nonce: Some(&nonce),
        ..SignOptions::new(keyid, created)
    };
    // Adds Content-Digest (for a body), Signature-Input and Signature.
    httpsig::sign_request(method.as_str(), &uri, &mut headers, body, &opts, key)?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(Bytes::copy_from_slice(body)))?;
    *req.headers_mut() = headers;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let key = httpsig::parse_private_key(&std::fs::read_to_string(&args.key)?)?;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let base = args.url.trim_end_matches('/');

    // 1. A token: the form is signed with its digest, content type and idempotency key.
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(
        "x-idempotency-key",
        HeaderValue::from_str(&hex::encode(rand::random::<[u8; 16]>()))?,
    );
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("clientId", &args.client)
        .append_pair("clientSecret", &args.secret)
        .finish();
    let url = format!("{base}/v1/auth");
    let (status, body) = send(
        &client,
        &key,
        &args.keyid,
        Method::POST,
        &url,
        headers,
        form.as_bytes(),
    )
    .await?;
    println!("POST /v1/auth -> {status}\n{body}");
    if status != 201 {
        return Err("no token".into());
    }
    let entity: serde_json::Value = serde_json::from_str(&body)?;
    let token = entity["accessToken"].as_str().ok_or("no accessToken")?;

    // 2. An API call: bearer token, client id and idempotency key are all covered.
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-client-id", HeaderValue::from_str(&args.client)?);
    headers.insert(
        "x-idempotency-key",
        HeaderValue::from_str(&hex::encode(rand::random::<[u8; 16]>()))?,
    );
    let url = format!("{base}{}", args.path);
    let order = br#"{"amount":100,"currency":"EUR"}"#;
    let (status, body) = send(
        &client,
        &key,
        &args.keyid,
        Method::POST,
        &url,
        headers,
        order,
    )
    .await?;
    println!("POST {} -> {status}\n{body}", args.path);
    Ok(())
}
