//! Signed responses (RFC 9421 §2.4) end to end: a route with `sign_responses` answers with
//! Warden's signature over the status, the content digest, the content type and the request
//! (its method, URL and signature); the client's check (`warden verify` and its library
//! function) and an independent Python check accept it; a response too large to buffer is not
//! delivered unsigned.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use http::{HeaderMap, Request};
use http_body_util::Full;
use tokio::io::AsyncWriteExt as _;
use warden::clock::Clock;
use warden::httpsig::{self, SignOptions};
use warden::response_signing::{SentRequest, verify_response};

use crate::harness::{Client, Config, Proxy, Reply, StoreDir, Upstream};

const CLIENT: (&str, &str) = ("shop", "shop-secret-2Lk");

fn client_key() -> SigningKey {
    SigningKey::from_bytes(&[31; 32])
}

fn warden_key() -> SigningKey {
    SigningKey::from_bytes(&[32; 32])
}

/// Writes Warden's response key (PKCS#8, as `warden keygen` does) and its public half.
fn write_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let private = dir.join("response.pem");
    let pem = warden_key()
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    std::fs::write(&private, pem.as_bytes()).unwrap();
    let public = dir.join("response.pub");
    std::fs::write(
        &public,
        base64::engine::general_purpose::STANDARD.encode(warden_key().verifying_key().to_bytes()),
    )
    .unwrap();
    (private, public)
}

struct Setup {
    _up: Upstream,
    proxy: Proxy,
    public: PathBuf,
    _store: StoreDir,
}

async fn start(max_bytes: u64) -> Setup {
    let store = StoreDir::new();
    let (private, public) = write_keys(store.dir());
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .store(&store)
        .routes(
            "[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\n\
             sign_responses = true\nidempotency = \"off\"\n\
             [[routes]]\nname = \"plain\"\npath = \"/plain/**\"\nauth = \"bearer\"\nidempotency = \"off\"\n\
             [[routes]]\nname = \"sse\"\npath = \"/sse\"\nauth = \"none\"\nsign_responses = true\n",
        )
        .append(&format!(
            "[signatures]\nresponse_key_file = {:?}\nresponse_max_bytes = {max_bytes}\n\
             [[clients]]\nid = {:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n\
             [[clients.keys]]\nid = \"shop-key\"\npublic_key = \"{}\"\n",
            private.display().to_string(),
            CLIENT.0,
            hex::encode(warden::secret::hash(CLIENT.1)),
            base64::engine::general_purpose::STANDARD.encode(client_key().verifying_key().to_bytes()),
        ));
    let proxy = Proxy::start(config).await;
    Setup {
        _up: up,
        proxy,
        public,
        _store: store,
    }
}

async fn token(proxy: &Proxy) -> String {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", CLIENT.0, CLIENT.1));
    let req = Request::post(proxy.url("/v1/oauth/token"))
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::from("grant_type=client_credentials"))
        .unwrap();
    let reply = Client::http1().send(req).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

/// A signed request to `path`; returns what was sent (for the check) and the reply.
async fn call(s: &Setup, method: &str, path: &str, body: &[u8]) -> (SentRequest, Reply) {
    let token = token(&s.proxy).await;
    let url = s.proxy.url(path);
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    if !body.is_empty() {
        headers.insert("content-type", "application/json".parse().unwrap());
    }
    let opts = SignOptions::new("shop-key", Clock::default().now());
    httpsig::sign_request(
        method,
        &url.parse().unwrap(),
        &mut headers,
        body,
        &opts,
        &client_key(),
    )
    .unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(&url)
        .body(Full::from(Bytes::copy_from_slice(body)))
        .unwrap();
    *req.headers_mut() = headers.clone();
    let reply = Client::http1().send(req).await;
    let mut sent_headers = HeaderMap::new();
    sent_headers.insert("signature", headers["signature"].clone());
    let sent = SentRequest {
        method: method.to_owned(),
        url: url.parse().unwrap(),
        headers: sent_headers,
    };
    (sent, reply)
}

fn warden_public() -> httpsig::VerificationKey {
    httpsig::parse_verification_key(
        httpsig::Algorithm::Ed25519,
        &base64::engine::general_purpose::STANDARD.encode(warden_key().verifying_key().to_bytes()),
    )
    .unwrap()
}

/// The independent check (tests/interop/verify_response.py), when python3 has `cryptography`.
async fn python_check(reply: &Reply, sent: &SentRequest) -> Option<String> {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("python3 with cryptography not found: the independent check is skipped");
        return None;
    }
    let pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        warden_key()
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap()
    };
    let pairs = |h: &HeaderMap| {
        h.iter()
            .map(|(n, v)| vec![n.as_str().to_owned(), v.to_str().unwrap().to_owned()])
            .collect::<Vec<_>>()
    };
    let input = serde_json::json!({
        "status": reply.status.as_u16(),
        "headers": pairs(&reply.headers),
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&reply.body),
        "method": sent.method,
        "url": sent.url.to_string(),
        "request_headers": pairs(&sent.headers),
        "public_key_pem": pem,
    });
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/verify_response.py"
    );
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test]
async fn a_signed_routes_response_verifies_for_the_client_and_independently() {
    let s = start(1 << 20).await;
    let body = br#"{"amount":5,"currency":"EUR"}"#;
    let (sent, reply) = call(&s, "POST", "/api/orders?ref=a%20b", body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply
            .header("signature-input")
            .unwrap()
            .split(";created")
            .next()
            .unwrap(),
        "warden=(\"@status\" \"content-digest\" \"content-type\" \"@method\";req \
         \"@target-uri\";req \"signature\";req;key=\"sig1\")"
    );
    let now = Clock::default().now();
    let ok = verify_response(
        reply.status.as_u16(),
        &reply.headers,
        &reply.body,
        &sent,
        &warden_public(),
        Some("warden"),
        Some((now, 300)),
    )
    .unwrap();
    assert!(ok.binds_request_signature);
    // The response answers this request and no other.
    let mut other = sent.clone();
    other.url = s.proxy.url("/api/orders?ref=other").parse().unwrap();
    assert!(
        verify_response(
            200,
            &reply.headers,
            &reply.body,
            &other,
            &warden_public(),
            None,
            None
        )
        .is_err()
    );
    if let Some(out) = python_check(&reply, &sent).await {
        assert_eq!(out, "ok warden");
        let mut changed = sent.clone();
        changed.method = "PUT".into();
        assert!(
            python_check(&reply, &changed)
                .await
                .unwrap()
                .starts_with("FAIL")
        );
    }
}

#[tokio::test]
async fn warden_verify_checks_a_curl_style_response_and_says_what_failed() {
    let s = start(1 << 20).await;
    let (sent, reply) = call(&s, "GET", "/api/orders/7", b"").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // As `curl -i` prints it.
    let mut raw = format!("HTTP/1.1 {}\r\n", reply.status);
    for (name, value) in &reply.headers {
        raw.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(&reply.body);
    let file = s.public.with_file_name("response.txt");
    std::fs::write(&file, &raw).unwrap();
    let signature = format!("Signature: {}", sent.headers["signature"].to_str().unwrap());
    let run = |request: String, response: PathBuf| {
        let public = s.public.clone();
        let signature = signature.clone();
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"))
                .args(["verify", "--key"])
                .arg(&public)
                .args(["--request", &request, "-H", &signature, "--response"])
                .arg(&response)
                .env_remove("WARDEN_CONFIG")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let url = sent.url.to_string();
    let (code, out) = run(format!("GET {url}"), file.clone()).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("verified"), "{out}");
    let (code, out) = run(format!("DELETE {url}"), file.clone()).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("does not verify"), "{out}");
    // A changed body: the digest says so.
    let last = raw.len() - 2;
    raw[last] ^= 0x01;
    std::fs::write(&file, &raw).unwrap();
    let (code, out) = run(format!("GET {url}"), file.clone()).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Content-Digest"), "{out}");
}

#[tokio::test]
async fn routes_that_do_not_sign_answer_as_before() {
    let s = start(1 << 20).await;
    let (_, reply) = call(&s, "GET", "/plain/x", b"").await;
    assert_eq!(reply.status, 200);
    assert!(reply.header("signature-input").is_none());
    assert!(reply.header("content-digest").is_none());
}

#[tokio::test]
async fn a_response_too_large_to_buffer_is_not_delivered_unsigned() {
    let s = start(512).await;
    let (_, reply) = call(&s, "POST", "/api/orders", &[b'7'; 600]).await;
    reply.problem(502, "response_not_signable");
    assert!(reply.header("signature-input").is_none());
    // A stream of unknown length, cut at the limit as it arrives.
    let reply = Client::http1().get(&s.proxy.url("/sse?gap_ms=20")).await;
    assert_eq!(
        reply.status,
        200,
        "the first 512 bytes fit: {}",
        reply.text()
    );
    let s = start(8).await;
    let reply = Client::http1().get(&s.proxy.url("/sse?gap_ms=20")).await;
    reply.problem(502, "response_not_signable");
}
