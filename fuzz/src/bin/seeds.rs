//! Writes the seed corpus, `corpus/<target>/`, from the repository's test vectors
//! (`tests/data/`: RFC 9421, RFC 9530 and OAuth examples) and a few hand-written inputs.
//! `cargo run --bin seeds`; the output is committed, so rerun it only when the vectors change.

use std::path::Path;

use serde_json::Value;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../tests/data");
    let read = |name: &str| -> std::io::Result<Value> {
        let text = std::fs::read_to_string(data.join(name))?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    };
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    // Signatures: input, signature, target, authority, then the message's header lines.
    let rfc9421 = read("rfc9421_examples.json")?;
    for example in rfc9421["examples"].as_array().into_iter().flatten() {
        let (Some(input), Some(signature)) = (
            example["signature_input_field_value"].as_str(),
            example["signature_field_value"].as_str(),
        ) else {
            continue;
        };
        let message = &rfc9421["messages"][example["message"].as_str().unwrap_or_default()];
        let mut lines = vec![
            input.to_owned(),
            signature.to_owned(),
            message["request_target"].as_str().unwrap_or("/").to_owned(),
            message["authority"]
                .as_str()
                .unwrap_or("example.com")
                .to_owned(),
        ];
        for pair in message["headers"].as_array().into_iter().flatten() {
            lines.push(format!("{}: {}", s(&pair[0]), s(&pair[1])));
        }
        seeds.push(("signature", lines.join("\n").into_bytes()));
    }
    let b26 = read("rfc9421_b26_ed25519.json")?;
    if let Some(request) = b26["request"].as_object() {
        let added = |name: &str| {
            b26["headers_added"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|pair| pair[0] == name)
                .map_or("", |pair| s(&pair[1]))
                .to_owned()
        };
        let mut lines = vec![
            added("Signature-Input"),
            added("Signature"),
            s(&request["request_target"]).to_owned(),
            s(&request["authority"]).to_owned(),
        ];
        for pair in request["headers"].as_array().into_iter().flatten() {
            lines.push(format!("{}: {}", s(&pair[0]), s(&pair[1])));
        }
        seeds.push(("signature", lines.join("\n").into_bytes()));
    }

    // Content-Digest: the value, then the body.
    let rfc9530 = read("rfc9530_digests.json")?;
    for example in rfc9530["examples"].as_array().into_iter().flatten() {
        if let (Some(value), Some(body)) = (
            example["printed_value"].as_str(),
            example["content_utf8"].as_str(),
        ) {
            seeds.push(("content_digest", format!("{value}\n{body}").into_bytes()));
        }
    }
    let multi = s(&rfc9530["multi_value_example"]["value"]);
    seeds.push((
        "content_digest",
        format!("{multi}, md5=:AAAA:\n").into_bytes(),
    ));

    // Authorization, form bodies and request targets from the OAuth examples.
    let oauth = read("oauth_examples.json")?;
    let mut strings = Vec::new();
    collect(&oauth, "", &mut strings);
    for (key, value) in &strings {
        match key.as_str() {
            "authorization" => seeds.push(("authorization", value.clone().into_bytes())),
            "example" => {
                if let Some(credentials) = value.strip_prefix("Authorization: ") {
                    seeds.push(("authorization", credentials.as_bytes().to_vec()));
                }
            }
            "body" if value.contains('=') => seeds.push(("form", value.clone().into_bytes())),
            "target" => seeds.push(("path", value.clone().into_bytes())),
            _ => {}
        }
    }

    for (target, input) in HAND_WRITTEN {
        seeds.push((target, input.as_bytes().to_vec()));
    }

    let corpus = root.join("corpus");
    let mut count = std::collections::BTreeMap::<&str, usize>::new();
    for (target, input) in &seeds {
        let selector = warden::fuzzing::TARGETS
            .iter()
            .position(|(n, _)| n == target)
            .unwrap_or(0);
        for (dir, bytes) in [
            (*target, input.clone()),
            ("all", [&[selector as u8][..], input].concat()),
        ] {
            let n = count.entry(dir).or_default();
            *n += 1;
            std::fs::create_dir_all(corpus.join(dir))?;
            std::fs::write(corpus.join(dir).join(format!("seed-{n:03}")), bytes)?;
        }
    }
    for (dir, n) in count {
        println!("{n:4} corpus/{dir}");
    }
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Every string in `v`, with the key it is under.
fn collect(v: &Value, key: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(text) => out.push((key.to_owned(), text.clone())),
        Value::Array(items) => items.iter().for_each(|i| collect(i, key, out)),
        Value::Object(map) => map.iter().for_each(|(k, i)| collect(i, k, out)),
        _ => {}
    }
}

const HAND_WRITTEN: &[(&str, &str)] = &[
    ("path", "/v1/orders/42"),
    ("path", "/public/a/files/x/y.txt?download=1"),
    (
        "path",
        "/ws/accounts/acme/credentials/tokens/mt_0123456789abcdef0123456789abcdef/enable",
    ),
    ("path", "/admin/../public/a/files/x"),
    ("path", "/public/%2e%2E/admin"),
    ("path", "/public/..;/admin/users"),
    ("path", "/a%2fb/%5c/%00"),
    ("path", "http://h.example//x?y#z"),
    (
        "authorization",
        "Bearer wdn_at_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJK",
    ),
    ("authorization", "bearer  mF_9.B5f-4.1JqM==  "),
    (
        "authorization",
        "Basic bXklM0FjbGllbnQ6cCU0MHNzK3clMkJvcmQ=\nBearer x",
    ),
    (
        "idempotency_key",
        "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
    ),
    ("idempotency_key", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
    ("idempotency_key", "\"a\\\"b\"\na\"b"),
    (
        "form",
        "grant_type=client_credentials&scope=table%3A%2F%2Fmy.app.*+read",
    ),
    ("form", "a=1&a=2"),
    (
        "json",
        "{\"grant_type\":\"client_credentials\",\"client_id\":\"c\",\"n\":3,\"x\":null}",
    ),
    ("json", "{\"a b\":\"1\",\"a\\u0020b\":\"2\"}"),
    (
        "token_body",
        "{\"name\":\"ci\",\"scopes\":\"table://my.app.* read\",\"expiresIn\":3600}",
    ),
    (
        "token_body",
        "{\"name\":\"ci\",\"user\":\"u\",\"audience\":\"orders\",\"scopes\":[\"read\"],\"expiresAt\":1800000000}",
    ),
    ("token_body", "{\"reason\":\"rotated\"}"),
    ("forwarded_for", "\x006.6.6.6, 198.51.100.7\n10.0.0.2"),
    ("forwarded_for", "\x02[2001:db8::1]:443, fd00::2"),
    ("forwarded_for", "\x031.1.1.1, bogus, ::ffff:10.0.0.2"),
    (
        "scopes",
        "table://*.** level://admin read\ntable://a.b table://a.* read",
    ),
    (
        "scopes",
        "table://my.app.**\ntable://my.app table://my.apple table://my.app.x.y",
    ),
];
