//! The issuer's clients: those the config file declares, written into the store at every start
//! (and retired when the file stops declaring them), and the managed ones the CLI creates,
//! rotates, enables and disables.

use ipnet::IpNet;

use super::{AdminError, Issuer};
use crate::events;
use crate::policy::SignatureMode;
use crate::secret::{self, SecretKind};
use crate::store::{ClientRecord, ClientSource, Hash, SecretHash, SigningKey, StoreError};

/// A client declared in config (`[[clients]]`), validated by `config/clients.rs`.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub id: String,
    pub name: String,
    pub account: String,
    pub secret_sha256: [u8; 32],
    pub trusted_ips: Vec<IpNet>,
    pub scopes: Vec<String>,
    pub enabled: bool,
    pub keys: Vec<ClientKey>,
    /// `clients[].signature`, default `auto` (sign when a key is registered): how this client's
    /// signatures are required on routes whose mode is `auto`.
    pub signature: SignatureMode,
}

/// A signing key registered to a client (RFC 9421 `keyid`), parsed. An HMAC secret lives
/// only here (in memory); the store keeps the public bytes of the others.
#[derive(Debug, Clone)]
pub struct ClientKey {
    pub id: String,
    pub key: crate::httpsig::VerificationKey,
}

impl Issuer {
    /// Makes the store say what the config file says, at every start: writes the declared
    /// clients ([`Issuer::apply_config_clients`]) and disables every client the file declared
    /// once and no longer does, so that removing a client from the file retires its secret and
    /// every credential issued to it. Declaring it again brings it back as declared.
    pub async fn bootstrap(&self, clients: &[ClientSettings]) -> Result<(), StoreError> {
        self.apply_config_clients(clients).await?;
        self.disable_undeclared_clients().await
    }

    /// Writes the clients declared in config into the store (they are config-owned: the file
    /// is the source of truth), leaving clients the file does not declare as they are. The
    /// CLI does only this, so that running it with a partial config file retires nothing.
    pub async fn apply_config_clients(&self, clients: &[ClientSettings]) -> Result<(), StoreError> {
        let now = self.clock.now();
        *self.declared.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(clients.iter().map(|c| c.id.clone()).collect());
        for c in clients {
            if is_well_known_secret(&c.secret_sha256) {
                tracing::warn!(client_id = %c.id, "client secret is a well-known word (like the demo client's): anyone can guess it; use a generated secret");
            }
            let record = ClientRecord {
                id: c.id.clone(),
                name: c.name.clone(),
                account: c.account.clone(),
                secrets: vec![SecretHash {
                    hash: c.secret_sha256,
                    created_at: now,
                    expires_at: None,
                }],
                keys: c
                    .keys
                    .iter()
                    .map(|k| SigningKey {
                        key_id: k.id.clone(),
                        alg: k.key.alg().name().to_owned(),
                        // An HMAC secret is held in memory only: its row has no bytes.
                        public_key: k.key.stored().unwrap_or_default(),
                    })
                    .collect(),
                trusted_ips: c.trusted_ips.iter().map(|n| n.to_string()).collect(),
                scopes: c.scopes.clone(),
                enabled: c.enabled,
                source: ClientSource::Config,
                created_at: now,
                updated_at: now,
            };
            // Rewriting an unchanged client would fire the change feed and empty every
            // instance's cache; compare first.
            if let Some(existing) = self.store.get_client(&c.id).await? {
                if same_declaration(&existing, &record) {
                    continue;
                }
            }
            self.store.upsert_client(record).await?;
        }
        Ok(())
    }

    /// Disables the config-declared clients that the file no longer declares.
    async fn disable_undeclared_clients(&self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut disabled = false;
        for c in self.store.list_clients().await? {
            if c.source != ClientSource::Config || !c.enabled || self.is_declared(&c.id) {
                continue;
            }
            if self.store.set_client_enabled(&c.id, false, now).await? {
                tracing::warn!(client_id = %c.id, "client no longer declared in the config file: disabled, with its secrets, keys and tokens");
                disabled = true;
            }
        }
        if disabled {
            self.cache.invalidate_all();
        }
        Ok(())
    }

    /// Whether the config file declares client `id`; `true` for any id before the file was
    /// applied (nothing is known to be undeclared then).
    fn is_declared(&self, id: &str) -> bool {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|d| d == id))
    }

    /// Creates a managed client and returns it with its secret, shown this once.
    pub async fn create_client(
        &self,
        id: &str,
        name: Option<String>,
        account: Option<String>,
        scopes: Vec<String>,
        trusted_ips: Vec<IpNet>,
    ) -> Result<(ClientRecord, String), AdminError> {
        if !crate::scope::valid_id(id) {
            return Err(AdminError::Invalid(format!(
                "client id '{id}' must be 1-128 of A-Z a-z 0-9 . _ : -"
            )));
        }
        for s in &scopes {
            crate::scope::check(s).map_err(|e| AdminError::Invalid(format!("scope '{s}': {e}")))?;
        }
        if self.store.get_client(id).await?.is_some() {
            return Err(AdminError::Invalid(format!("client '{id}' already exists")));
        }
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ClientSecret);
        let record = ClientRecord {
            id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            account: account.unwrap_or_else(|| id.to_string()),
            secrets: vec![SecretHash {
                hash: minted.hash,
                created_at: now,
                expires_at: None,
            }],
            keys: Vec::new(),
            trusted_ips: trusted_ips.iter().map(|n| n.to_string()).collect(),
            scopes,
            enabled: true,
            source: ClientSource::Managed,
            created_at: now,
            updated_at: now,
        };
        self.store.upsert_client(record.clone()).await?;
        Ok((record, minted.value))
    }

    /// Gives a managed client a new secret; the old ones stay valid for `overlap`, then only
    /// the new one works. Config-declared clients rotate by editing `secret_sha256`.
    pub async fn rotate_client_secret(
        &self,
        id: &str,
        overlap: std::time::Duration,
    ) -> Result<String, AdminError> {
        let Some(client) = self.store.get_client(id).await? else {
            return Err(AdminError::NotFound(format!("client '{id}'")));
        };
        if client.source == ClientSource::Config {
            return Err(AdminError::Invalid(if self.is_declared(id) {
                format!(
                    "client '{id}' is declared in the config file: change its secret_sha256 there"
                )
            } else {
                format!(
                    "client '{id}' was declared in a config file that no longer declares it: declare it again in [[clients]], with a new secret_sha256, to use it"
                )
            }));
        }
        let now = self.clock.now();
        let minted = secret::mint(SecretKind::ClientSecret);
        let new = SecretHash {
            hash: minted.hash,
            created_at: now,
            expires_at: None,
        };
        let old_expire_at = now + overlap.as_secs() as i64;
        let event = events::client_secret_rotated(&client, old_expire_at, now);
        self.store
            .add_client_secret(id, new, Some(old_expire_at), now, Some(event))
            .await?;
        Ok(minted.value)
    }

    /// Enables or disables a client; its tokens stop (or resume) working at once. A client
    /// declared in the config file is enabled or disabled there. One the file declared once
    /// and no longer does can be disabled here (before `warden serve` does it at its next
    /// start), but comes back only by being declared again.
    pub async fn set_client_enabled(&self, id: &str, enabled: bool) -> Result<(), AdminError> {
        if let Some(c) = self.store.get_client(id).await? {
            if c.source == ClientSource::Config && self.is_declared(id) {
                return Err(AdminError::Invalid(format!(
                    "client '{id}' is declared in the config file: set enabled = {enabled} there"
                )));
            }
            if c.source == ClientSource::Config && enabled {
                return Err(AdminError::Invalid(format!(
                    "client '{id}' was declared in a config file that no longer declares it, so `warden serve` disables it at every start: declare it again in [[clients]] to enable it"
                )));
            }
        }
        let now = self.clock.now();
        if !self.store.set_client_enabled(id, enabled, now).await? {
            return Err(AdminError::NotFound(format!("client '{id}'")));
        }
        self.cache.invalidate_all();
        Ok(())
    }
}

/// Secrets anyone would try first: the demo client's, and the usual placeholders.
const WELL_KNOWN_SECRETS: [&str; 6] = [
    "demo-secret",
    "secret",
    "password",
    "changeme",
    "client-secret",
    "",
];

/// Whether a config-declared secret is a well-known word. Its SHA-256 is unsalted, so a word
/// gives the same hash in every file, and a leaked file or store gives the word back at once.
pub(super) fn is_well_known_secret(hash: &Hash) -> bool {
    WELL_KNOWN_SECRETS.iter().any(|w| secret::matches(w, hash))
}

/// Whether a stored client already says what the config declares (timestamps aside).
fn same_declaration(stored: &ClientRecord, declared: &ClientRecord) -> bool {
    let secrets = |c: &ClientRecord| -> Vec<(Hash, Option<i64>)> {
        c.secrets.iter().map(|s| (s.hash, s.expires_at)).collect()
    };
    stored.name == declared.name
        && stored.account == declared.account
        && stored.keys == declared.keys
        && stored.trusted_ips == declared.trusted_ips
        && stored.scopes == declared.scopes
        && stored.enabled == declared.enabled
        && stored.source == declared.source
        && secrets(stored) == secrets(declared)
}
