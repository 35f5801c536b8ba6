//! The `warden` binary's subcommands other than `serve` (which stays in `main.rs`):
//! [`admin`] for the store's clients, API keys and named tokens, [`dev`] for the local
//! development tools. These modules belong to the binary, not to the `warden` library.

pub(crate) mod admin;
pub(crate) mod dev;
