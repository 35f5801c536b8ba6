//! The development tools: `warden keygen`, `warden sign`, `warden verify` and
//! `warden dev-proxy`. They need no configuration file and never touch the store.

use std::path::PathBuf;
use std::process::ExitCode;

use warden::clock::Clock;

/// `warden dev-proxy`: every setting may also come from `--file` (flags win). Secrets only
/// from files or environment variables.
#[derive(clap::Args)]
pub(crate) struct DevProxyArgs {
    /// A TOML file with the settings below (names with underscores: api_url, key_file, ...).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Where to listen (default 127.0.0.1:8787; loopback only without --allow-remote).
    #[arg(long)]
    listen: Option<String>,
    /// The Warden-protected API, e.g. https://api.example.com.
    #[arg(long)]
    api_url: Option<String>,
    /// The URL Warden checks signatures against, when it differs from --api-url.
    #[arg(long)]
    sign_url: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// A file holding the client secret.
    #[arg(long)]
    client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret (default $WARDEN_DEV_CLIENT_SECRET).
    #[arg(long)]
    client_secret_env: Option<String>,
    /// The private key file (from `warden keygen`, or a PEM / JWK of another algorithm).
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// An environment variable holding the private key (default $WARDEN_DEV_KEY).
    #[arg(long)]
    key_env: Option<String>,
    /// The keyid registered with Warden.
    #[arg(long)]
    key_id: Option<String>,
    /// The key's algorithm (needed for RSA and HMAC keys).
    #[arg(long)]
    key_alg: Option<String>,
    /// /v1/auth (default) or /v1/oauth/token.
    #[arg(long)]
    token_endpoint: Option<String>,
    /// warden or oauth (default: oauth for a path ending in /oauth/token).
    #[arg(long)]
    token_style: Option<String>,
    /// Scopes to ask for, space-separated (default: all of the client's).
    #[arg(long)]
    scope: Option<String>,
    /// sha-512 (default) or sha-256.
    #[arg(long)]
    digest: Option<String>,
    /// Largest request body buffered to digest and sign (default 10485760).
    #[arg(long)]
    max_body_bytes: Option<usize>,
    /// Add a random nonce to every signature.
    #[arg(long)]
    nonce: bool,
    /// Fraction of the token's lifetime after which it is refreshed (default 0.8).
    #[arg(long)]
    refresh_at: Option<f64>,
    /// Listen beyond loopback and accept any Host: anyone who reaches it acts as you.
    #[arg(long)]
    allow_remote: bool,
    /// Refused: a secret on the command line shows in `ps` and the shell history.
    #[arg(long, hide = true, num_args = 0..=1)]
    secret: Option<Option<String>>,
    #[arg(long, hide = true, num_args = 0..=1)]
    client_secret: Option<Option<String>>,
    #[arg(long, hide = true, num_args = 0..=1)]
    key: Option<Option<String>>,
}

#[derive(clap::Args)]
pub(crate) struct VerifyArgs {
    /// Warden's public key (PEM, JWK, or base64 for ed25519): signatures.response_key_file's
    /// public half.
    #[arg(long)]
    key: PathBuf,
    /// The key's algorithm (signatures.response_key_alg).
    #[arg(long, default_value = "ed25519")]
    alg: String,
    /// The keyid of Warden's signature (signatures.response_key_id); default: Warden's label.
    #[arg(long)]
    keyid: Option<String>,
    /// The request: "METHOD URL", the URL as the client called it.
    #[arg(long)]
    request: String,
    /// A header the request carried, "Name: value" (repeat); its Signature when it was signed.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The response as `curl -i` prints it (status line, headers, blank line, body); "-": stdin.
    #[arg(long)]
    response: PathBuf,
    /// Oldest signature accepted ("0s": any age).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    max_age: std::time::Duration,
}

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Write the private key (PKCS#8 PEM) to this new file, readable by the owner only, instead
    /// of printing it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The keyid to show in the config snippet.
    #[arg(long, default_value = "my-key-ed25519")]
    keyid: String,
    /// ed25519, ecdsa-p256-sha256, ecdsa-p384-sha384, or hmac-sha256 (a secret, written to
    /// --out only). RSA keys come from `openssl genpkey`.
    #[arg(long, default_value = "ed25519")]
    alg: String,
}

#[derive(clap::Args)]
pub(crate) struct SignArgs {
    /// The private key: a PKCS#8 PEM file from `warden keygen` (or PKCS#1 / SEC1 PEM, a
    /// private JWK, an HMAC secret file).
    #[arg(long)]
    key: PathBuf,
    /// The key's algorithm, when the key does not say it (RSA: rsa-pss-sha512 or
    /// rsa-v1_5-sha256; an HMAC secret: hmac-sha256).
    #[arg(long)]
    alg: Option<String>,
    /// The keyid registered with Warden.
    #[arg(long)]
    keyid: String,
    /// Method (default GET, or POST with a body).
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// The URL the client calls, as the client sees it (Warden's public_url).
    #[arg(long)]
    url: String,
    /// A header to send and sign, `name: value` (repeat).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// The body.
    #[arg(long, short = 'd', conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the body from this file.
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// `created`, unix seconds (default: now).
    #[arg(long)]
    created: Option<i64>,
    /// `expires`: unix seconds, or `+DURATION` after created (`+5m`).
    #[arg(long)]
    expires: Option<String>,
    /// `nonce`; without a value, a random one.
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    nonce: Option<String>,
    /// Components to cover, space- or comma-separated (default: what Warden requires).
    #[arg(long)]
    components: Option<String>,
    /// Digest algorithm: sha-512 or sha-256.
    #[arg(long, default_value = "sha-512")]
    digest: String,
    /// Print a complete curl command instead of the headers.
    #[arg(long)]
    curl: bool,
    /// Also print the signature base (to stderr).
    #[arg(long)]
    show_base: bool,
}

/// `warden dev-proxy`.
pub(crate) fn dev_proxy(args: &DevProxyArgs) -> ExitCode {
    use warden::devproxy::{self, DevProxyFile, DevProxySettings};
    if args.secret.is_some() || args.client_secret.is_some() || args.key.is_some() {
        eprintln!(
            "warden: secrets are never taken from the command line (ps and the shell history \
             show them): use --client-secret-file / --client-secret-env (or ${}) and --key-file \
             / --key-env (or ${})",
            devproxy::SECRET_ENV,
            devproxy::KEY_ENV
        );
        return ExitCode::from(2);
    }
    let base = match &args.file {
        Some(path) => match devproxy::read_file(path) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("warden: {e}");
                return ExitCode::from(2);
            }
        },
        None => DevProxyFile::default(),
    };
    let flags = DevProxyFile {
        listen: args.listen.clone(),
        api_url: args.api_url.clone(),
        sign_url: args.sign_url.clone(),
        client_id: args.client_id.clone(),
        client_secret_file: args.client_secret_file.clone(),
        client_secret_env: args.client_secret_env.clone(),
        key_file: args.key_file.clone(),
        key_env: args.key_env.clone(),
        key_id: args.key_id.clone(),
        key_alg: args.key_alg.clone(),
        token_endpoint: args.token_endpoint.clone(),
        token_style: args.token_style.clone(),
        scope: args.scope.clone(),
        digest: args.digest.clone(),
        max_body_bytes: args.max_body_bytes,
        nonce: args.nonce.then_some(true),
        refresh_at: args.refresh_at,
        allow_remote: args.allow_remote.then_some(true),
    };
    let env = |name: &str| std::env::var(name).ok();
    let settings = match DevProxySettings::resolve(base.merge(flags), &env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("warden: dev-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    match devproxy::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: dev-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `warden verify`: says whether a response carries Warden's valid signature, and if not why.
pub(crate) fn verify(args: &VerifyArgs) -> ExitCode {
    let read = |path: &std::path::Path| {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
        } else {
            std::fs::read(path)
        }
    };
    let (key, response) = match (std::fs::read_to_string(&args.key), read(&args.response)) {
        (Ok(key), Ok(response)) => (key, response),
        (Err(e), _) => {
            eprintln!("warden: cannot read --key {}: {e}", args.key.display());
            return ExitCode::from(2);
        }
        (_, Err(e)) => {
            eprintln!(
                "warden: cannot read --response {}: {e}",
                args.response.display()
            );
            return ExitCode::from(2);
        }
    };
    let alg = match alg_arg(&args.alg) {
        Ok(alg) => alg,
        Err(e) => return usage(&e),
    };
    let now = (!args.max_age.is_zero()).then(|| (Clock::default().now(), args.max_age.as_secs()));
    match warden::response_signing::verify_exchange(
        &response,
        &args.request,
        &args.headers,
        &key,
        alg,
        args.keyid.as_deref(),
        now,
    ) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("warden: {message}");
            ExitCode::from(code)
        }
    }
}

/// The algorithm `--alg` names, or what to tell the user.
fn alg_arg(name: &str) -> Result<warden::httpsig::Algorithm, String> {
    use warden::httpsig::Algorithm;
    Algorithm::from_name(name)
        .ok_or_else(|| format!("--alg {name}: not one of {}", Algorithm::names()))
}

/// Says what is wrong with the command line; exits 2.
fn usage(e: &str) -> ExitCode {
    eprintln!("warden: {e}");
    ExitCode::from(2)
}

/// `warden keygen`: a new key pair (or HMAC secret); the public half in the config format.
pub(crate) fn keygen(args: &KeygenArgs) -> ExitCode {
    let alg = match alg_arg(&args.alg) {
        Ok(alg) => alg,
        Err(e) => return usage(&e),
    };
    let (private, public) = match warden::httpsig::generate(alg) {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("warden: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &args.out {
        Some(path) => {
            if let Err(e) = write_private(path, private.as_bytes()) {
                eprintln!("warden: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            eprintln!("private key written to {} (keep it secret)", path.display());
        }
        None if alg.is_symmetric() => {
            eprintln!("warden: an hmac-sha256 secret is only written to a file: give --out FILE");
            return ExitCode::from(2);
        }
        None => print!("{private}"),
    }
    println!("# register the key with the client in warden.toml:");
    println!("[[clients.keys]]");
    println!("id = \"{}\"", args.keyid);
    println!("alg = \"{alg}\"");
    match (&args.out, alg.is_symmetric()) {
        (Some(path), true) => println!("secret_file = {:?}", path.display().to_string()),
        _ if public.starts_with('{') => println!("public_key = '{public}'"),
        _ => println!("public_key = \"{public}\""),
    }
    ExitCode::SUCCESS
}

/// Creates `path` (never overwriting) readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// `warden sign`: the headers that make a request pass Warden's signature check.
pub(crate) fn sign(args: &SignArgs) -> ExitCode {
    match sign_request(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => usage(&e),
    }
}

fn sign_request(args: &SignArgs) -> Result<(), String> {
    use warden::httpsig::{self, SignOptions};
    let pem = std::fs::read_to_string(&args.key)
        .map_err(|e| format!("cannot read --key {}: {e}", args.key.display()))?;
    let alg = args.alg.as_deref().map(alg_arg).transpose()?;
    let key = httpsig::parse_signer_key(&pem, alg).map_err(|e| format!("--key: {e}"))?;
    let body: Vec<u8> = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| format!("cannot read --data-file {}: {e}", path.display()))?,
        (None, None) => Vec::new(),
    };
    let method = args
        .method
        .clone()
        .unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_owned());
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(format!("-X {}: not an HTTP method", shell_quote(&method)));
    }
    let url: http::Uri = args
        .url
        .parse()
        .map_err(|_| format!("--url '{}' is not a URL", args.url))?;
    let mut headers = http::HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("-H '{h}' is not 'name: value'"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("-H '{h}': bad header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("-H '{h}': bad header value"))?;
        headers.append(name, value);
    }
    let created = args.created.unwrap_or_else(|| Clock::default().now());
    let expires = match args.expires.as_deref() {
        None => None,
        Some(rel) if rel.starts_with('+') => Some(
            created
                + humantime::parse_duration(&rel[1..])
                    .map_err(|_| format!("--expires '{rel}': not +DURATION like +5m"))?
                    .as_secs() as i64,
        ),
        Some(abs) => Some(
            abs.parse()
                .map_err(|_| format!("--expires '{abs}': not unix seconds or +DURATION"))?,
        ),
    };
    let nonce = args.nonce.as_deref().map(|n| {
        if n.is_empty() {
            let bytes: [u8; 16] = rand::random();
            hex::encode(bytes)
        } else {
            n.to_owned()
        }
    });
    let digest = warden::digest::Algorithm::from_name(&args.digest)
        .ok_or_else(|| format!("--digest '{}': use sha-512 or sha-256", args.digest))?;
    let components = args.components.as_ref().map(|c| {
        c.split([' ', ','])
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let opts = SignOptions {
        expires,
        nonce: nonce.as_deref(),
        components,
        digest,
        ..SignOptions::new(&args.keyid, created)
    };
    let signed = httpsig::sign_request(&method, &url, &mut headers, &body, &opts, &key)
        .map_err(|e| e.to_string())?;
    if args.show_base {
        eprintln!("{}", signed.base);
    }
    let added = ["content-digest", "signature-input", "signature"];
    if args.curl {
        let body = match &args.data_file {
            Some(path) => CurlBody::File(path.display().to_string()),
            None if !body.is_empty() => CurlBody::Text(String::from_utf8_lossy(&body).into_owned()),
            None => CurlBody::None,
        };
        println!("{}", curl_command(&method, &args.url, &headers, &body));
    } else {
        for name in added {
            if let Some(value) = headers.get(name) {
                let shown = match name {
                    "content-digest" => "Content-Digest",
                    "signature-input" => "Signature-Input",
                    _ => "Signature",
                };
                println!("{shown}: {}", String::from_utf8_lossy(value.as_bytes()));
            }
        }
    }
    Ok(())
}

/// What `warden sign --curl` sends as the body.
enum CurlBody {
    None,
    /// `--data-file`: curl reads the file.
    File(String),
    /// `--data`: sent as it is (`--data-raw`, so a leading `@` is not a file name).
    Text(String),
}

/// The curl command that sends a signed request. Every argument is one shell word whatever it
/// holds (the README pipes this to `sh`), the URL goes through `--url` so it is never read as
/// an option, and `--globoff` keeps curl from reading `[]{}` in it as patterns.
fn curl_command(method: &str, url: &str, headers: &http::HeaderMap, body: &CurlBody) -> String {
    let mut cmd = format!(
        "curl -X {} --globoff --url {}",
        shell_quote(method),
        shell_quote(url)
    );
    for (name, value) in headers {
        let line = format!("{}: {}", name, String::from_utf8_lossy(value.as_bytes()));
        cmd.push_str(&format!(" \\\n  -H {}", shell_quote(&line)));
    }
    match body {
        CurlBody::File(path) => cmd.push_str(&format!(
            " \\\n  --data-binary {}",
            shell_quote(&format!("@{path}"))
        )),
        CurlBody::Text(text) => {
            cmd.push_str(&format!(" \\\n  --data-raw {}", shell_quote(text)));
        }
        CurlBody::None => {}
    }
    cmd
}

/// `s` as one POSIX shell word: as it is when it holds only characters no shell treats
/// specially, else in single quotes, inside which only `'` needs care (`'\''`).
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'@' | b'%' | b'+' | b'=' | b':' | b',' | b'.' | b'/' | b'-'
                )
        });
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("GET"), "GET");
        assert_eq!(
            shell_quote("http://a.test:8080/x?y=1"),
            "'http://a.test:8080/x?y=1'"
        );
        assert_eq!(shell_quote("GET;id"), "'GET;id'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    /// The command, run by `sh` with `curl` replaced by `printf`, gives curl exactly the
    /// arguments meant, whatever the method, URL, headers and body hold.
    #[cfg(unix)]
    #[test]
    fn every_curl_argument_reaches_curl_as_one_word() {
        let nasty = "GET;id $(id) `id` \"$HOME\" 'q' \\ \n& | > *";
        let url = "http://a.test/x?y=1&z=[1]{2}#'f'";
        let mut headers = http::HeaderMap::new();
        headers.insert("x-a", http::HeaderValue::from_static("it's $(id); `x`"));
        let body = CurlBody::Text(format!("@/etc/passwd\n{nasty}"));
        let cmd = curl_command(nasty, url, &headers, &body);
        let script = cmd.replacen("curl", "printf '%s\\0'", 1);
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let args: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_owned)
            .collect();
        let want = [
            "-X",
            nasty,
            "--globoff",
            "--url",
            url,
            "-H",
            "x-a: it's $(id); `x`",
            "--data-raw",
            &format!("@/etc/passwd\n{nasty}"),
        ];
        assert_eq!(args, want);
        let file = curl_command("POST", url, &headers, &CurlBody::File("my file".into()));
        assert!(file.ends_with("--data-binary '@my file'"), "{file}");
    }
}
