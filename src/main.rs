//! The `warden` binary: parse arguments, load the configuration, start serving.

use std::path::PathBuf;
use std::process::ExitCode;

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
        if let Err(e) = issuer.bootstrap(&settings.clients).await {
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

fn serve(settings: Settings) -> ExitCode {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if settings.server.worker_threads > 0 {
        rt.worker_threads(settings.server.worker_threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        warden::telemetry::init(&settings.log);
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
        warden::run(listener, warden, shutdown_signal()).await;
        tracing::info!("warden stopped");
        ExitCode::SUCCESS
    })
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
