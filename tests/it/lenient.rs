//! An upstream that routes the way the most forgiving frameworks do, all at once: it reports
//! which "handler" ran, so a test can check that no spelling of a path reaches a handler under
//! a weaker policy than the handler's own route.
//!
//! Before routing it takes `X-Original-URL` / `X-Rewrite-URL` over the target (IIS, Zend),
//! percent-decodes the path until it stops changing (IIS and Spring's double decoding, `%uXXXX`
//! and overlong UTF-8 included), cuts it at a decoded `?` or `#` or NUL, reads `\` as `/`, strips
//! `;params` from each segment (Tomcat, Jetty), trims white space and trailing dots (Spring's
//! `trimTokens`, .NET's `Trim`, Windows), folds case as ASP.NET's OrdinalIgnoreCase and Express do, merges
//! `//` (Werkzeug), resolves dot-segments and drops a format suffix from the last segment
//! (`admin.json` is `admin` to Rails and to Spring's suffix match). The method is upper-cased (Werkzeug), HEAD runs
//! GET (Flask, Express, Go), and a POST honours method-override headers in any spelling and a
//! `_method` query parameter as PHP reads it. Headers are read as CGI does: `_` is `-`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The lenient upstream on `127.0.0.1:0`. Every answer carries `x-handler` (`admin` for
/// `/api/admin/**`, `api` for the rest of `/api/**`, `public` otherwise; each runs for any
/// method), `x-seen-path`, `x-seen-method`, and `x-seen-scopes` / `x-seen-client`: the
/// identity it believes, read CGI-style.
pub struct LenientUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl LenientUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|req| async move {
                        Ok::<_, Infallible>(respond(req).await)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LenientUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let headers = &parts.headers;
    let target = cgi_header(headers, "x-original-url")
        .or_else(|| cgi_header(headers, "x-rewrite-url"))
        .unwrap_or_else(|| parts.uri.path().to_owned());
    let path = lenient_path(&target);
    let method = lenient_method(parts.method.as_str(), headers, parts.uri.query());
    // Every handler runs for any method, as Django function views and Express's app.all do.
    let handler = if path == "/api/admin" || path.starts_with("/api/admin/") {
        "admin"
    } else if path == "/api" || path.starts_with("/api/") {
        "api"
    } else {
        "public"
    };
    let mut resp = Response::builder()
        .status(StatusCode::OK)
        .header("x-handler", handler)
        .header("x-seen-path", header_safe(&path))
        .header("x-seen-raw-path", header_safe(parts.uri.path()))
        .header("x-seen-method", header_safe(&method));
    for (name, seen) in [
        ("x-seen-scopes", cgi_header(headers, "x-warden-scopes")),
        ("x-seen-client", cgi_header(headers, "x-warden-client-id")),
    ] {
        if let Some(v) = seen {
            resp = resp.header(name, header_safe(&v));
        }
    }
    resp.body(Full::from(handler)).unwrap()
}

/// Every value of the fields that a CGI server maps to `name` (`X_Warden_Scopes` is
/// `X-Warden-Scopes`), joined.
fn cgi_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.as_str().replace('_', "-") == name)
        .map(|(_, v)| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

/// The path as the most forgiving router reads it (see the module comment).
pub fn lenient_path(raw: &str) -> String {
    let mut path = raw.to_owned();
    for _ in 0..4 {
        let next = decode_once(&path);
        if next == path {
            break;
        }
        path = next;
    }
    let cut = path.find(['?', '#', '\0']).unwrap_or(path.len());
    path.truncate(cut);
    let path = path.replace('\\', "/");
    let mut out: Vec<String> = Vec::new();
    for segment in path.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        // `..` stays a dot-segment; other trailing dots go (`admin.` is `admin`).
        // .NET's Trim() takes any white space, Java's trim() spaces.
        let segment = segment.trim_matches(char::is_whitespace);
        let segment = if segment == ".." {
            segment
        } else {
            segment.trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        };
        let folded: String = segment.chars().map(fold).collect();
        match folded.as_str() {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(folded),
        }
    }
    // Rails' `(.:format)` and Spring's suffix match: `admin.json` runs `admin`'s handler.
    if let Some(last) = out.last_mut() {
        if let Some(dot) = last.find('.').filter(|&d| d > 0) {
            last.truncate(dot);
        }
    }
    format!("/{}", out.join("/"))
}

/// Upper then lower case, one character to one, as OrdinalIgnoreCase compares: `ı` and `ſ`
/// become `i` and `s`, `K` (Kelvin) becomes `k`.
fn fold(c: char) -> char {
    let mut upper = c.to_uppercase();
    let u = match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    };
    u.to_lowercase().next().unwrap_or(u)
}

/// One round of percent-decoding: `%XX`, IIS's `%uXXXX`, and overlong two-byte UTF-8 read as
/// the ASCII character it spells (old Tomcat and IIS); anything undecodable stays.
fn decode_once(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |x: &[u8]| {
        std::str::from_utf8(x)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if matches!(b.get(i + 1), Some(b'u' | b'U')) && i + 6 <= b.len() {
                if let Some(c) = hex(&b[i + 2..i + 6]).and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
            if i + 3 <= b.len() {
                if let Some(v) = hex(&b[i + 1..i + 3]) {
                    bytes.push(v as u8);
                    i += 3;
                    continue;
                }
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut j = 0;
    while j < bytes.len() {
        if matches!(bytes[j], 0xC0 | 0xC1) && bytes.get(j + 1).is_some_and(|n| n & 0xC0 == 0x80) {
            out.push(((bytes[j] & 0x1F) << 6) | (bytes[j + 1] & 0x3F));
            j += 2;
        } else {
            out.push(bytes[j]);
            j += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The method as the most forgiving framework runs it (see the module comment).
pub fn lenient_method(method: &str, headers: &HeaderMap, query: Option<&str>) -> String {
    let method = method.to_ascii_uppercase();
    let method = if method == "HEAD" {
        "GET".to_owned()
    } else {
        method
    };
    if method != "POST" {
        return method;
    }
    for name in [
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
    ] {
        if let Some(v) = cgi_header(headers, name) {
            return v.to_ascii_uppercase();
        }
    }
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let k: String = k
            .trim_start()
            .chars()
            .map(|c| if matches!(c, ' ' | '.' | '[') { '_' } else { c })
            .collect();
        if k.eq_ignore_ascii_case("_method") {
            return v.to_ascii_uppercase();
        }
    }
    method
}

#[test]
fn the_lenient_reading_finds_the_admin_path_in_every_known_spelling() {
    for spelling in [
        "/api/admin/users",
        "/api/%61dmin/users",
        "/%61pi/admin/users",
        "/API/ADMIN/users",
        "/public/..;/api/admin/users",
        "/api/admin;x/users",
        "/api/admin%3bx/users",
        "/public/%2e%2e/api/admin/users",
        "/public/%252e%252e/api/admin/users",
        "/api/%2561dmin/users",
        "/api/%u0061dmin/users",
        "/api/adm%C4%B1n/users",
        "/api/admin./users",
        "/api/admin%20/users",
        "/api/admin%C2%A0/users",
        "/api//admin/users",
        "/api\\admin\\users",
        "/api/admin%2fusers",
        "/api/admin%3F/users",
        "/x/%C0%AE%C0%AE/api/admin/users",
        "/api/admin.json",
        "/api/ADMIN.json/",
    ] {
        assert!(
            lenient_path(spelling).starts_with("/api/admin"),
            "{spelling} -> {}",
            lenient_path(spelling)
        );
    }
}
