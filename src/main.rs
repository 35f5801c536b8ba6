//! The `warden` binary: parse arguments, load the configuration, start serving.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use warden::{Settings, Warden};

mod cli;

use cli::admin::{ApiKeyCmd, ClientCmd, TokenCmd, admin, api_key_cmd, client_cmd, token_cmd};
use cli::dev::{DevProxyArgs, KeygenArgs, SignArgs, VerifyArgs, dev_proxy, keygen, sign, verify};

/// mimalloc: the request path allocates small, short-lived objects, where it beats the system
/// allocator (measured in docs/benchmarks.md). Its `override` feature (Cargo.toml) makes it
/// serve `malloc`/`free` too, so the bundled SQLite's allocations (several a statement: bound
/// text and blobs are copied, cursors allocated) skip glibc's allocator as well.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Webhook(cli::webhooks::WebhookCmd),
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
        Command::Webhook(cmd) => cli::webhooks::run(settings, cmd),
        Command::Keygen(args) => keygen(&args),
        Command::Sign(args) => sign(&args),
        Command::Verify(args) => verify(&args),
        Command::DevProxy(args) => dev_proxy(&args),
    }
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
        let admin_listen = settings.admin.listen;
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
        let admin = match admin_listen {
            None => None,
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("warden: cannot listen on {addr} (admin.listen): {e}");
                    return ExitCode::FAILURE;
                }
            },
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
        warden::run_with_admin(listener, admin, warden, shutdown_signal()).await;
        tracing::info!("warden stopped");
        ExitCode::SUCCESS
    })
}

/// SIGHUP: the TLS certificate and key are read again (see `tls::TlsReloader`); nothing else
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
