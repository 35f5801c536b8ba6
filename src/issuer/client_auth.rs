//! Client authentication by id and secret, with the failure limits of [`super::throttle`].

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use super::throttle::Attempt;
use super::{ClientAuthError, Issuer, parse_nets};
use crate::secret;
use crate::store::ClientRecord;

impl Issuer {
    /// Authenticates a client by id and secret, calling from `ip`.
    ///
    /// The secret is checked first: a caller without it learns nothing about the client, not
    /// even whether it exists, is disabled or may call from `ip` (all `invalid_client`). Only a
    /// caller who proved the secret hears that its address is outside the client's networks.
    /// Every refusal counts as a failure ([`throttle`]).
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        client_secret: &str,
        ip: IpAddr,
    ) -> Result<ClientRecord, ClientAuthError> {
        let attempt = Attempt::new(client_id, ip);
        if self.failures.refused(&attempt) {
            return Err(ClientAuthError::RateLimited {
                retry_after: self.failures.retry_after(),
            });
        }
        // No client can have an invalid id: not worth a store read.
        if !attempt.has_valid_id() {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::UnknownClient));
        }
        let client = match self.store.get_client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                return Err(self.failed(&attempt, client_id, ip, ClientAuthError::UnknownClient));
            }
            Err(e) => return Err(ClientAuthError::Store(e)),
        };
        let now = self.clock.now();
        let presented = secret::hash(client_secret);
        // Check every active secret, so the time taken does not say which one matched.
        let mut ok = false;
        for s in client.secrets.iter().filter(|s| s.is_active(now)) {
            ok |= bool::from(subtle::ConstantTimeEq::ct_eq(&presented[..], &s.hash[..]));
        }
        if !ok {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::WrongSecret));
        }
        if !client.enabled {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::Disabled));
        }
        // A stolen secret is useless from the wrong network.
        let nets = parse_nets(&client.trusted_ips);
        if !nets.is_empty() && !crate::gate::client_ip::is_trusted(ip, &nets) {
            return Err(self.failed(&attempt, client_id, ip, ClientAuthError::IpNotAllowed));
        }
        self.failures.succeeded(&attempt);
        Ok(client)
    }

    fn failed(
        &self,
        attempt: &Attempt,
        client_id: &str,
        ip: IpAddr,
        why: ClientAuthError,
    ) -> ClientAuthError {
        self.failures.failed(attempt);
        self.failed_auth_total.fetch_add(1, Ordering::Relaxed);
        // A caller who swapped the fields sends a secret as the id: never log one.
        let shown = if crate::scope::valid_id(client_id) && !client_id.starts_with("wdn_") {
            client_id
        } else {
            "<malformed>"
        };
        let reason = match &why {
            ClientAuthError::UnknownClient => "unknown_client",
            ClientAuthError::WrongSecret => "wrong_secret",
            ClientAuthError::Disabled => "client_disabled",
            ClientAuthError::IpNotAllowed => "outside_trusted_ips",
            _ => "other",
        };
        tracing::warn!(client_id = shown, client_ip = %ip, reason, "client authentication failed");
        why
    }
}
