//! `warden verify`: a raw response (as `curl -i` prints it) and the request it answers, read
//! and checked.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::verify::{SentRequest, verify_response};
use crate::httpsig::{self, Algorithm};

/// A response as `curl -i` prints it: status line, header lines, a blank line, the body (the
/// last such block when interim `1xx` responses came first). Lines may end in CRLF or LF.
pub fn parse_raw_response(raw: &[u8]) -> Result<(u16, HeaderMap, Vec<u8>), String> {
    let mut rest = raw;
    loop {
        let (status, headers, body) = parse_one(rest)?;
        if (100..200).contains(&status) && status != 101 && body.starts_with(b"HTTP/") {
            rest = body;
            continue;
        }
        return Ok((status, headers, body.to_vec()));
    }
}

fn parse_one(raw: &[u8]) -> Result<(u16, HeaderMap, &[u8]), String> {
    let mut headers = HeaderMap::new();
    let mut at = 0;
    let mut status = None;
    loop {
        let end = raw[at..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("the response ends before the blank line after its headers")?;
        let line = &raw[at..at + end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += end + 1;
        if status.is_none() {
            let text = String::from_utf8_lossy(line);
            let mut words = text.split_whitespace();
            let code = match (words.next(), words.next()) {
                (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
                _ => None,
            };
            status = Some(
                code.ok_or("the response does not start with a status line (HTTP/1.1 200 ...)")?,
            );
            continue;
        }
        if line.is_empty() {
            let status = status.unwrap_or_default();
            return Ok((status, headers, &raw[at..]));
        }
        let text = std::str::from_utf8(line).map_err(|_| "a header line is not UTF-8")?;
        let (name, value) = text
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {text:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("bad header name: {name:?}"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("bad header value of {name}"))?;
        headers.append(name, value);
    }
}

/// `warden verify`: checks a raw response (as `curl -i` prints it) against the request
/// (`"METHOD URL"` and its header lines) with `key` (a public key in any accepted format, or a
/// private key file's text, whose public half is used). `Ok` is the report; `Err((code,
/// text))`: 1 when the response does not verify, 2 when the input is unusable.
pub fn verify_exchange(
    raw_response: &[u8],
    request: &str,
    request_headers: &[String],
    key_text: &str,
    alg: Algorithm,
    keyid: Option<&str>,
    now: Option<(i64, u64)>,
) -> Result<String, (u8, String)> {
    let usage = |e: String| (2u8, e);
    let key = if key_text.contains("PRIVATE KEY") {
        httpsig::parse_signer_key(key_text, Some(alg))
            .and_then(|k| k.verification_key())
            .map_err(|e| usage(format!("--key: {e}")))?
    } else {
        httpsig::parse_verification_key(alg, key_text).map_err(|e| usage(format!("--key: {e}")))?
    };
    let (method, url) = request
        .trim()
        .split_once(' ')
        .ok_or_else(|| usage("--request must be \"METHOD URL\"".into()))?;
    let url: http::Uri = url
        .trim()
        .parse()
        .map_err(|_| usage(format!("--request: {url:?} is not a URL")))?;
    let mut headers = HeaderMap::new();
    for line in request_headers {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| usage(format!("-H {line:?} is not \"Name: value\"")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("-H {line:?}: bad header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("-H {line:?}: bad header value")))?;
        headers.append(name, value);
    }
    let (status, resp_headers, body) = parse_raw_response(raw_response).map_err(usage)?;
    let sent = SentRequest {
        method: method.to_owned(),
        url,
        headers,
    };
    let ok = verify_response(status, &resp_headers, &body, &sent, &key, keyid, now)
        .map_err(|e| (1u8, format!("response NOT verified: {e}")))?;
    let mut report = format!(
        "verified: signature {:?} ({}) of the {status} response to {method} {}\ncovers: {}\n",
        ok.label,
        key.alg(),
        sent.url,
        ok.covered.join(" ")
    );
    if let (Some(created), Some((now, _))) = (ok.created, now) {
        report.push_str(&format!("created: {created} ({} s ago)\n", now - created));
    }
    report.push_str(if ok.binds_request_signature {
        "it answers the request that carried this Signature\n"
    } else {
        "it does not bind a request signature (the request was not signed, or not checked)\n"
    });
    Ok(report)
}
