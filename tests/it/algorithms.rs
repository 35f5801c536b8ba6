//! Every RFC 9421 algorithm through a real Warden: one client holding a key of each algorithm
//! (public keys as PEM SPKI, PKCS#1-less JWK and raw base64; the HMAC secret from a file),
//! signed requests pass, a changed signature and an `alg` that is not the key's are refused,
//! and the HMAC secret never reaches the store.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::Full;
use serde_json::Value;
use warden::clock::Clock;
use warden::httpsig::{self, Algorithm, MessageSigner, SignOptions, SignerKey};

use crate::harness::{Client, Config, Proxy, StoreDir, Upstream};

const KEYS: &str = include_str!("../data/rfc9421_keys.json");
const P384: &str = include_str!("../data/ecdsa_p384_generated.json");
const CLIENT: (&str, &str) = ("multi", "multi-secret-7Qw");

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// The keys: (keyid, algorithm, private key text, public key TOML lines).
fn keys(secret_path: &str) -> Vec<(&'static str, Algorithm, String, String)> {
    let k = json(KEYS);
    let p = json(P384);
    let key = |id: &str, member: &str| k["keys"][id][member].as_str().unwrap().to_owned();
    let ed = warden::httpsig::parse_private_key(&key("test-key-ed25519", "private_pem")).unwrap();
    let mut pss_jwk = k["keys"]["test-key-rsa-pss"]["jwk"].clone();
    for private in ["d", "p", "q", "dp", "dq", "qi"] {
        pss_jwk.as_object_mut().unwrap().remove(private);
    }
    vec![
        (
            "k-ed25519",
            Algorithm::Ed25519,
            key("test-key-ed25519", "private_pem"),
            format!(
                "public_key = \"{}\"",
                base64::engine::general_purpose::STANDARD.encode(ed.verifying_key().to_bytes())
            ),
        ),
        (
            "k-p256",
            Algorithm::EcdsaP256Sha256,
            key("test-key-ecc-p256", "private_pem"),
            format!(
                "public_key = '''{}'''",
                key("test-key-ecc-p256", "public_pem")
            ),
        ),
        (
            "k-p384",
            Algorithm::EcdsaP384Sha384,
            p["private_pem"].as_str().unwrap().to_owned(),
            format!("public_key = '''{}'''", p["public_pem"].as_str().unwrap()),
        ),
        (
            "k-pss",
            Algorithm::RsaPssSha512,
            key("test-key-rsa-pss", "private_pem"),
            format!(
                "public_key = '''{}'''",
                key("test-key-rsa-pss", "public_pem")
            ),
        ),
        (
            "k-v15",
            Algorithm::RsaV15Sha256,
            key("test-key-rsa-pss", "private_pem"),
            format!("public_key = '{pss_jwk}'"),
        ),
        (
            "k-hmac",
            Algorithm::HmacSha256,
            key("test-shared-secret", "secret_b64"),
            format!("secret_file = {secret_path:?}"),
        ),
    ]
}

struct Setup {
    up: Upstream,
    proxy: Proxy,
    store: StoreDir,
    signers: Vec<(&'static str, SignerKey)>,
}

async fn start() -> Setup {
    let store = StoreDir::new();
    let secret_path = store.dir().join("hmac.secret");
    let k = json(KEYS);
    std::fs::write(
        &secret_path,
        k["keys"]["test-shared-secret"]["secret_b64"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let keys = keys(&secret_path.display().to_string());
    let mut toml = format!(
        "[[clients]]\nid = {:?}\nsecret_sha256 = \"{}\"\nscopes = [\"read\"]\n",
        CLIENT.0,
        hex::encode(warden::secret::hash(CLIENT.1))
    );
    let mut signers = Vec::new();
    for (id, alg, private, public) in keys {
        toml.push_str(&format!(
            "[[clients.keys]]\nid = \"{id}\"\nalg = \"{alg}\"\n{public}\n"
        ));
        signers.push((id, httpsig::parse_signer_key(&private, Some(alg)).unwrap()));
    }
    let up = Upstream::start().await;
    let config = Config::new(&up.url())
        .store(&store)
        .routes("[[routes]]\nname = \"api\"\npath = \"/api/**\"\nauth = \"bearer\"\nsignature = \"required\"\nidempotency = \"off\"\n")
        .append(&toml);
    let proxy = Proxy::start(config).await;
    Setup {
        up,
        proxy,
        store,
        signers,
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

/// A POST to `/api/orders`, signed by `key` under `keyid`; `tamper` may change it afterwards.
fn signed_post(
    proxy: &Proxy,
    token: &str,
    keyid: &str,
    key: &dyn MessageSigner,
    tamper: impl FnOnce(&mut HeaderMap),
) -> Request<Full<Bytes>> {
    let url = proxy.url("/api/orders?n=1");
    let body = br#"{"amount":1}"#;
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let opts = SignOptions::new(keyid, Clock::default().now());
    httpsig::sign_request(
        "POST",
        &url.parse().unwrap(),
        &mut headers,
        body,
        &opts,
        key,
    )
    .unwrap();
    tamper(&mut headers);
    let mut req = Request::post(url).body(Full::from(&body[..])).unwrap();
    *req.headers_mut() = headers;
    req
}

#[tokio::test]
async fn a_signature_in_every_algorithm_passes_and_a_changed_one_does_not() {
    let s = start().await;
    let token = token(&s.proxy).await;
    let mut passed = 0;
    for (keyid, key) in &s.signers {
        let reply = Client::http1()
            .send(signed_post(&s.proxy, &token, keyid, key, |_| {}))
            .await;
        assert_eq!(reply.status, 200, "{keyid}: {}", reply.text());
        passed += 1;
        let flipped = |h: &mut HeaderMap| {
            let value = h.get("signature").unwrap().to_str().unwrap().to_owned();
            // Flip one base64 character inside the byte sequence.
            let at = value.find(":").unwrap() + 5;
            let mut bytes = value.into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            h.insert(
                HeaderName::from_static("signature"),
                HeaderValue::from_bytes(&bytes).unwrap(),
            );
        };
        let reply = Client::http1()
            .send(signed_post(&s.proxy, &token, keyid, key, flipped))
            .await;
        reply.problem(401, "signature_invalid");
    }
    assert_eq!(passed, 6);
    assert_eq!(
        s.up.calls(),
        6,
        "only the intact signatures reached the upstream"
    );
}

#[tokio::test]
async fn alg_must_be_the_keys_algorithm() {
    let s = start().await;
    let token = token(&s.proxy).await;
    let signer = |id: &str| &s.signers.iter().find(|(k, _)| *k == id).unwrap().1;
    // The PSS key's private half signing PKCS#1 v1.5 under the keyid registered for PSS: the
    // alg it writes is not the key's.
    for (keyid, key) in [
        ("k-pss", signer("k-v15")),
        ("k-v15", signer("k-pss")),
        // An HMAC tag under an asymmetric key's id (alg confusion, RFC 9421 §7.3.6).
        ("k-p256", signer("k-hmac")),
        ("k-hmac", signer("k-ed25519")),
    ] {
        let reply = Client::http1()
            .send(signed_post(&s.proxy, &token, keyid, key, |_| {}))
            .await;
        reply.problem(401, "algorithm_mismatch");
    }
    // Without alg, the key's algorithm applies: an HMAC tag does not verify as ECDSA.
    let strip_alg = |h: &mut HeaderMap| {
        let input = h.get("signature-input").unwrap().to_str().unwrap();
        let input = input.replace(";alg=\"hmac-sha256\"", "");
        h.insert(
            HeaderName::from_static("signature-input"),
            HeaderValue::from_str(&input).unwrap(),
        );
    };
    let reply = Client::http1()
        .send(signed_post(
            &s.proxy,
            &token,
            "k-p256",
            signer("k-hmac"),
            strip_alg,
        ))
        .await;
    reply.problem(401, "signature_invalid");
    assert_eq!(s.up.calls(), 0);
}

#[tokio::test]
async fn the_hmac_secret_is_never_written_to_the_store() {
    let s = start().await;
    let conn = rusqlite::Connection::open(s.store.db_path()).unwrap();
    let mut stmt = conn
        .prepare("SELECT key_id, alg, length(public_key) FROM client_keys ORDER BY key_id")
        .unwrap();
    let rows: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("k-ed25519".into(), "ed25519".into(), 32),
            ("k-hmac".into(), "hmac-sha256".into(), 0),
            ("k-p256".into(), "ecdsa-p256-sha256".into(), 65),
            ("k-p384".into(), "ecdsa-p384-sha384".into(), 97),
            ("k-pss".into(), "rsa-pss-sha512".into(), 270),
            ("k-v15".into(), "rsa-v1_5-sha256".into(), 270),
        ]
    );
    // Nor anywhere else in the database file.
    let secret = base64::engine::general_purpose::STANDARD
        .decode(
            json(KEYS)["keys"]["test-shared-secret"]["secret_b64"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    drop(stmt);
    drop(conn);
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", s.store.db_path().display());
        let file = std::fs::read(&path).unwrap_or_default();
        assert!(
            !file.windows(secret.len()).any(|w| w == secret.as_slice()),
            "{path}"
        );
    }
}
