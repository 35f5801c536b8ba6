//! The administrative commands `warden client`, `warden api-key` and `warden token`: each
//! opens the store named in the configuration, does one thing and prints the result. A
//! running Warden sees the change through the store's change feed (revocations at once).
//! (`warden webhook` is [`super::webhooks`].)

use std::process::ExitCode;

use clap::Subcommand;
use warden::Settings;
use warden::clock::Clock;
use warden::issuer::{AdminError, Issuer};
use warden::store::TokenKind;

#[derive(Subcommand)]
pub(crate) enum ClientCmd {
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
pub(crate) enum ApiKeyCmd {
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

type AdminFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), AdminError>> + 'a>>;

/// Runs an administrative command against the store named in the configuration.
pub(crate) fn admin(
    settings: Settings,
    run: impl for<'a> FnOnce(&'a Issuer) -> AdminFuture<'a>,
) -> ExitCode {
    super::on_runtime(async move {
        let store =
            match warden::store::open(&settings.store.url, settings.store.options.clone()).await {
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

pub(crate) async fn client_cmd(issuer: &Issuer, cmd: ClientCmd) -> Result<(), AdminError> {
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

pub(crate) async fn api_key_cmd(issuer: &Issuer, cmd: ApiKeyCmd) -> Result<(), AdminError> {
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
pub(crate) enum TokenCmd {
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

pub(crate) async fn token_cmd(issuer: &Issuer, cmd: TokenCmd) -> Result<(), AdminError> {
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
