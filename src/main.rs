//! The `warden` binary: parse arguments, load the configuration, start serving.

use std::path::PathBuf;

/// mimalloc: the request path allocates small, short-lived objects, where it beats the system
/// allocator (measured in docs/benchmarks.md). Its `override` feature (Cargo.toml) makes it
/// serve `malloc`/`free` too, so the bundled SQLite's allocations (several a statement: bound
/// text and blobs are copied, cursors allocated) skip glibc's allocator as well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use warden::clock::Clock;
use warden::issuer::{AdminError, Issuer};
use warden::store::TokenKind;
use warden::{Settings, Warden};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Authentication sidecar for HTTP APIs"
)]
struct Cli {
    /// Configuration file (TOML); `WARDEN_…` environment variables override it.
    #[arg(
        long,
        global = true,
        default_value = "config/warden.toml",
        env = "WARDEN_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar (the default).
    Serve,
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Manage API clients in the store.
    #[command(subcommand)]
    Client(ClientCmd),
    /// Manage long-lived API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
    /// Manage named tokens (the token-management API from the command line).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage webhook subscriptions and their deliveries.
    #[command(subcommand)]
    Webhook(warden::webhooks::cli::WebhookCmd),
    /// Generate an Ed25519 key pair for signing requests (local development).
    Keygen(KeygenArgs),
    /// Print the Content-Digest and RFC 9421 signature headers for a request (local development).
    Sign(SignArgs),
    /// Check Warden's RFC 9421 signature on a response (saved with `curl -i`), against the
    /// request it answers.
    Verify(VerifyArgs),
    /// A local proxy for development: forwards plain requests (curl, a browser) to a
    /// Warden-protected API with an access token, X-Client-Id, an idempotency key, the
    /// Content-Digest and an RFC 9421 signature.
    #[command(name = "dev-proxy")]
    DevProxy(DevProxyArgs),
}

/// `warden dev-proxy`: every setting may also come from `--file` (flags win). Secrets only
/// from files or environment variables.
#[derive(clap::Args)]
struct DevProxyArgs {
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
struct VerifyArgs {
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
struct KeygenArgs {
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
struct SignArgs {
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

#[derive(Subcommand)]
enum ClientCmd {
    /// Create a client; its secret is printed once.
    Create {
        /// Client id (1-128 of A-Z a-z 0-9 . _ : -).
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Account the client belongs to (default: the id).
        #[arg(long)]
        account: Option<String>,
        /// A scope the client may hold (repeat for several).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A CIDR the client may call from (repeat; none: anywhere).
        #[arg(long = "trusted-ip")]
        trusted_ips: Vec<String>,
    },
    /// List clients.
    List,
    /// Show one client (never its secrets).
    Show { id: String },
    /// Disable a client: its secrets and tokens stop working at once.
    Disable { id: String },
    /// Enable a disabled client.
    Enable { id: String },
    /// Give a client a new secret (printed once); the old one works for the overlap.
    RotateSecret {
        id: String,
        /// How long the old secret keeps working (default: tokens.secret_rotation_overlap).
        #[arg(long, value_parser = humantime::parse_duration)]
        overlap: Option<std::time::Duration>,
    },
}

#[derive(Subcommand)]
enum ApiKeyCmd {
    /// Create an API key for a client; the key is printed once.
    Create {
        /// The owning client.
        #[arg(long)]
        client: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List a client's API keys (never their values).
    List {
        #[arg(long)]
        client: String,
    },
    /// Revoke an API key and issue its replacement (printed once).
    Revoke { id: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The development tools need no configuration.
    match &cli.command {
        Some(Command::Keygen(args)) => return keygen(args),
        Some(Command::Sign(args)) => return sign(args),
        Some(Command::Verify(args)) => return verify(args),
        Some(Command::DevProxy(args)) => return dev_proxy(args),
        _ => {}
    }
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warden: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!("configuration OK: {}", cli.config.display());
            ExitCode::SUCCESS
        }
        Command::Serve => serve(settings),
        Command::Client(cmd) => admin(settings, |issuer| Box::pin(client_cmd(issuer, cmd))),
        Command::ApiKey(cmd) => admin(settings, |issuer| Box::pin(api_key_cmd(issuer, cmd))),
        Command::Token(cmd) => admin(settings, |issuer| Box::pin(token_cmd(issuer, cmd))),
        Command::Webhook(cmd) => warden::webhooks::cli::run(settings, cmd),
        Command::Keygen(args) => keygen(&args),
        Command::Sign(args) => sign(&args),
        Command::Verify(args) => verify(&args),
        Command::DevProxy(args) => dev_proxy(&args),
    }
}

/// `warden dev-proxy`.
fn dev_proxy(args: &DevProxyArgs) -> ExitCode {
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
fn verify(args: &VerifyArgs) -> ExitCode {
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
    let Some(alg) = warden::httpsig::Algorithm::from_name(&args.alg) else {
        eprintln!(
            "warden: --alg {}: not one of {}",
            args.alg,
            warden::httpsig::Algorithm::names()
        );
        return ExitCode::from(2);
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

type AdminFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AdminError>> + 'a>>;

/// Runs an administrative command against the store named in the configuration.
fn admin(settings: Settings, run: impl for<'a> FnOnce(&'a Issuer) -> AdminFuture<'a>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let store = match warden::service::open_store(&settings).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warden: store: {e}");
                return ExitCode::FAILURE;
            }
        };
        let issuer = Issuer::new(store, settings.tokens.clone(), Clock::default());
        // Only `serve` disables the clients the file no longer declares: a command run with a
        // partial config file must not retire the clients another file declares.
        if let Err(e) = issuer.apply_config_clients(&settings.clients).await {
            eprintln!("warden: store: {e}");
            return ExitCode::FAILURE;
        }
        match run(&issuer).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn client_cmd(issuer: &Issuer, cmd: ClientCmd) -> Result<(), AdminError> {
    match cmd {
        ClientCmd::Create {
            id,
            name,
            account,
            scopes,
            trusted_ips,
        } => {
            let nets = warden::config::parse_cidrs("--trusted-ip", &trusted_ips)
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            let (client, secret) = issuer
                .create_client(&id, name, account, scopes, nets)
                .await?;
            println!("client created: {}", client.id);
            println!("client secret (shown once, store it now): {secret}");
        }
        ClientCmd::List => {
            println!(
                "{:<32} {:<24} {:<8} {:<8} scopes",
                "id", "account", "enabled", "source"
            );
            for c in issuer.store().list_clients().await? {
                println!(
                    "{:<32} {:<24} {:<8} {:<8} {}",
                    c.id,
                    c.account,
                    c.enabled,
                    c.source.as_str(),
                    c.scopes.join(" ")
                );
            }
        }
        ClientCmd::Show { id } => {
            let Some(c) = issuer.store().get_client(&id).await? else {
                return Err(AdminError::NotFound(format!("client '{id}'")));
            };
            let secrets: Vec<_> = c
                .secrets
                .iter()
                .map(
                    |s| serde_json::json!({"created_at": s.created_at, "expires_at": s.expires_at}),
                )
                .collect();
            let keys: Vec<_> = c
                .keys
                .iter()
                .map(|k| serde_json::json!({"id": k.key_id, "alg": k.alg}))
                .collect();
            let shown = serde_json::json!({
                "id": c.id, "name": c.name, "account": c.account, "enabled": c.enabled,
                "source": c.source.as_str(), "scopes": c.scopes, "trusted_ips": c.trusted_ips,
                "keys": keys, "secrets": secrets, "created_at": c.created_at, "updated_at": c.updated_at,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
        }
        ClientCmd::Disable { id } => {
            issuer.set_client_enabled(&id, false).await?;
            println!("client disabled: {id}");
            let undeclared = issuer.store().get_client(&id).await?;
            if undeclared.is_some_and(|c| c.source == warden::store::ClientSource::Config) {
                println!(
                    "it was declared in a config file that no longer declares it: declaring it there again brings it back"
                );
            }
        }
        ClientCmd::Enable { id } => {
            issuer.set_client_enabled(&id, true).await?;
            println!("client enabled: {id}");
        }
        ClientCmd::RotateSecret { id, overlap } => {
            let overlap = overlap.unwrap_or(issuer.settings().secret_rotation_overlap);
            let secret = issuer.rotate_client_secret(&id, overlap).await?;
            println!(
                "new client secret (shown once, store it now): {secret}\nthe previous secret keeps working for {}",
                humantime::format_duration(overlap)
            );
        }
    }
    Ok(())
}

async fn api_key_cmd(issuer: &Issuer, cmd: ApiKeyCmd) -> Result<(), AdminError> {
    match cmd {
        ApiKeyCmd::Create { client, name } => {
            let Some(c) = issuer.store().get_client(&client).await? else {
                return Err(AdminError::NotFound(format!("client '{client}'")));
            };
            let issued = issuer.issue_api_key(&c, name).await?;
            println!("api key created: {}", issued.record.id);
            println!("api key (shown once, store it now): {}", issued.value);
        }
        ApiKeyCmd::List { client } => {
            let Some(c) = issuer.store().get_client(&client).await? else {
                return Err(AdminError::NotFound(format!("client '{client}'")));
            };
            println!(
                "{:<36} {:<20} {:<12} {:<12} replaced_by",
                "id", "name", "created_at", "revoked_at"
            );
            for t in issuer
                .store()
                .list_tokens(&c.account, Some(TokenKind::ApiKey))
                .await?
            {
                if t.client_id != c.id {
                    continue;
                }
                println!(
                    "{:<36} {:<20} {:<12} {:<12} {}",
                    t.id,
                    t.name.as_deref().unwrap_or("-"),
                    t.created_at,
                    t.revoked_at
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.replaced_by.as_deref().unwrap_or("-")
                );
            }
        }
        ApiKeyCmd::Revoke { id } => match issuer.rotate_api_key(&id).await? {
            Some(issued) => {
                println!("api key revoked: {id}");
                println!("replacement api key: {}", issued.record.id);
                println!(
                    "replacement value (shown once, store it now): {}",
                    issued.value
                );
            }
            None => return Err(AdminError::NotFound(format!("active api key '{id}'"))),
        },
    }
    Ok(())
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a named token for a client's account; the value is printed once.
    Create {
        /// The owning client (the token belongs to its account and uses its trusted IPs).
        #[arg(long)]
        client: String,
        #[arg(long)]
        name: String,
        /// A scope (repeat, or space-separated); each must be granted by the client's scopes.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        audience: Option<String>,
        /// Lifetime (`30d`, `12h`); default: never expires.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List an account's named tokens (never their values).
    List {
        #[arg(long)]
        account: String,
    },
    /// Show one token (never its value).
    Show { id: String },
    /// Disable a token: refused from the next request on.
    Disable {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Enable a disabled token.
    Enable { id: String },
    /// Rename a token.
    Rename { id: String, name: String },
    /// Delete a token for good.
    Delete { id: String },
}

async fn token_cmd(issuer: &Issuer, cmd: TokenCmd) -> Result<(), AdminError> {
    use warden::issuer::tokens_api::{self, ManagedSpec};
    let now = Clock::default().now();
    let max_name = issuer.settings().max_name_length;
    let invalid = |(_, detail): tokens_api::Refusal| AdminError::Invalid(detail);
    let find = |id: String| async move {
        issuer
            .managed_token(&id, None)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("token '{id}'")))
    };
    let gone = |id: &str| AdminError::NotFound(format!("token '{id}'"));
    match cmd {
        TokenCmd::Create {
            client,
            name,
            scopes,
            user,
            audience,
            expires_in,
        } => {
            let Some(c) = issuer.store().get_client(&client).await? else {
                return Err(AdminError::NotFound(format!("client '{client}'")));
            };
            let mut spec = ManagedSpec {
                name,
                user,
                audience,
                scopes: scopes
                    .iter()
                    .flat_map(|s| warden::scope::split_list(s))
                    .map(str::to_owned)
                    .collect(),
                expires_at: expires_in.map(|d| now + d.as_secs() as i64),
            };
            spec.vet(max_name, &[&c.scopes], None, now)
                .map_err(invalid)?;
            let issued = issuer.create_managed_token(&c, spec).await?;
            println!("token created: {}", issued.record.id);
            println!("token (shown once, store it now): {}", issued.value);
        }
        TokenCmd::List { account } => {
            println!(
                "{:<36} {:<24} {:<7} {:<12} scopes",
                "id", "name", "active", "expires_at"
            );
            for t in issuer.managed_tokens(&account).await? {
                println!(
                    "{:<36} {:<24} {:<7} {:<12} {}",
                    t.id,
                    t.name.as_deref().unwrap_or("-"),
                    t.is_active(now),
                    t.expires_at
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.scopes.join(" ")
                );
            }
        }
        TokenCmd::Show { id } => {
            let t = find(id).await?;
            let shown = tokens_api::entity(&t, now);
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
        }
        TokenCmd::Disable { id, reason } => {
            if let Some(r) = &reason {
                tokens_api::check_name("--reason", r, max_name).map_err(invalid)?;
            }
            let t = find(id).await?;
            issuer
                .set_managed_enabled(&t, false, reason)
                .await?
                .ok_or_else(|| gone(&t.id))?;
            println!("token disabled: {}", t.id);
        }
        TokenCmd::Enable { id } => {
            let t = find(id).await?;
            issuer
                .set_managed_enabled(&t, true, None)
                .await?
                .ok_or_else(|| gone(&t.id))?;
            println!("token enabled: {}", t.id);
        }
        TokenCmd::Rename { id, name } => {
            tokens_api::check_name("name", &name, max_name).map_err(invalid)?;
            let t = find(id).await?;
            issuer
                .rename_managed_token(&t, name)
                .await?
                .ok_or_else(|| gone(&t.id))?;
            println!("token renamed: {}", t.id);
        }
        TokenCmd::Delete { id } => {
            let t = find(id).await?;
            if !issuer.delete_managed_token(&t).await? {
                return Err(gone(&t.id));
            }
            println!("token deleted: {}", t.id);
        }
    }
    Ok(())
}

fn serve(settings: Settings) -> ExitCode {
    let threads = match settings.server.worker_threads {
        0 => std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0),
        n => n,
    };
    // One worker: a current-thread runtime does the same work without cross-thread wake-ups.
    let mut rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if threads > 1 {
            b.worker_threads(threads);
        }
        b
    };
    rt.enable_all();
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        warden::telemetry::init(&settings.log);
        // Taken over before anything else: SIGHUP's default action would end the process.
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let listen = settings.server.listen;
        let scheme = if settings.server.tls.is_some() { "https" } else { "http" };
        let upstream = format!(
            "{}://{}{}",
            settings.upstream.scheme, settings.upstream.authority, settings.upstream.base_path
        );
        let routes = settings.routes.len();
        let warden = match Warden::new(settings).await {
            Ok(w) => w,
            Err(e) => {
                eprintln!("warden: configuration error: {e}");
                return ExitCode::from(2);
            }
        };
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("warden: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(listen = %local, upstream = %upstream, routes, "warden listening on {scheme}://{local}, forwarding to {upstream}");
        #[cfg(unix)]
        match hangups {
            Ok(hangups) => {
                tokio::spawn(reload_on_hangup(hangups, warden.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP"),
        }
        warden::run(listener, warden, shutdown_signal()).await;
        tracing::info!("warden stopped");
        ExitCode::SUCCESS
    })
}

/// SIGHUP: the TLS certificate and key are read again (see `server::TlsReloader`); nothing else
/// is. Routes and clients are not swapped under running requests: see README "Operations".
#[cfg(unix)]
async fn reload_on_hangup(mut hangups: tokio::signal::unix::Signal, warden: Arc<Warden>) {
    while hangups.recv().await.is_some() {
        match warden.tls() {
            Some(tls) => {
                let changed = tls.reload_logged("SIGHUP");
                tracing::info!(
                    tls_changed = changed,
                    "SIGHUP: reloaded TLS; routes and clients need a restart"
                );
            }
            None => tracing::info!("SIGHUP: no TLS to reload; routes and clients need a restart"),
        }
    }
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `warden keygen`: a new key pair (or HMAC secret); the public half in the config format.
fn keygen(args: &KeygenArgs) -> ExitCode {
    let Some(alg) = warden::httpsig::Algorithm::from_name(&args.alg) else {
        eprintln!(
            "warden: --alg {}: not one of {}",
            args.alg,
            warden::httpsig::Algorithm::names()
        );
        return ExitCode::from(2);
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
fn sign(args: &SignArgs) -> ExitCode {
    match sign_request(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(2)
        }
    }
}

fn sign_request(args: &SignArgs) -> Result<(), String> {
    use warden::httpsig::{self, SignOptions};
    let pem = std::fs::read_to_string(&args.key)
        .map_err(|e| format!("cannot read --key {}: {e}", args.key.display()))?;
    let alg =
        match args.alg.as_deref() {
            None => None,
            Some(name) => Some(httpsig::Algorithm::from_name(name).ok_or_else(|| {
                format!("--alg {name}: not one of {}", httpsig::Algorithm::names())
            })?),
        };
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
