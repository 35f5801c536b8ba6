//! The `warden` binary: parse arguments, load the configuration, start serving.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warden::{Settings, Warden};

#[derive(Parser)]
#[command(name = "warden", version, about = "Authentication sidecar for HTTP APIs")]
struct Cli {
    /// Configuration file (TOML); `WARDEN_…` environment variables override it.
    #[arg(long, global = true, default_value = "config/warden.toml", env = "WARDEN_CONFIG")]
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
    }
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
