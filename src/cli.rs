//! The `warden` binary's subcommands other than `serve` (which stays in `main.rs`):
//! [`admin`] for the store's clients, API keys and named tokens, [`webhooks`] for webhook
//! subscriptions and deliveries, [`dev`] for the local development tools. These modules
//! belong to the binary, not to the `warden` library: they sit above everything, so the
//! library's modules never import the command line (`.ci/structure.py` checks the direction).

pub(crate) mod admin;
pub(crate) mod dev;
pub(crate) mod webhooks;

use std::future::Future;
use std::process::ExitCode;

/// Runs a command on a current-thread runtime: `warden webhook` and the binary's store
/// commands (`client`, `api-key`, `token`). A runtime that cannot start is a failure.
pub(crate) fn on_runtime(command: impl Future<Output = ExitCode>) -> ExitCode {
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
    rt.block_on(command)
}
