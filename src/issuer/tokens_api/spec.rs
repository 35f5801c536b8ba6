//! What a managed token is made of, and the checks it must pass before it is created: the
//! limits, and what its grantor holds. Shared by the HTTP API and the CLI.

use crate::problem::TokenRefusal;
use crate::scope;

/// The most scopes one managed token may hold.
pub const MAX_SCOPES: usize = 64;
/// The longest `user`, in characters.
pub const MAX_USER_CHARS: usize = 256;

/// What a new managed token is to be, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedSpec {
    pub name: String,
    pub user: Option<String>,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    /// Unix seconds; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// A refusal of a token request, as the HTTP API and the CLI both report it.
pub type Refusal = (TokenRefusal, String);

pub(super) fn refuse(kind: TokenRefusal, detail: impl Into<String>) -> Refusal {
    (kind, detail.into())
}

/// Checks a token name: 1 to `max` characters, not blank, no control characters.
pub fn check_name(field: &str, name: &str, max: usize) -> Result<(), Refusal> {
    if name.trim().is_empty() {
        return Err(refuse(
            TokenRefusal::InvalidField,
            format!("{field} must not be empty"),
        ));
    }
    if name.chars().count() > max {
        return Err(refuse(
            TokenRefusal::NameTooLong,
            format!("{field} is longer than {max} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse(
            TokenRefusal::InvalidField,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

impl ManagedSpec {
    /// Checks the spec against the limits, and against what its grantor holds: every scope
    /// must be granted by every list in `grantors` (the caller's token and its client), and a
    /// grantor limited to an audience can only create tokens for that audience. Removes
    /// repeated scopes.
    pub fn vet(
        &mut self,
        max_name: usize,
        grantors: &[&[String]],
        grantor_audience: Option<&str>,
        now: i64,
    ) -> Result<(), Refusal> {
        check_name("name", &self.name, max_name)?;
        if let Some(user) = &self.user {
            if user.trim().is_empty()
                || user.chars().count() > MAX_USER_CHARS
                || user.chars().any(char::is_control)
            {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    format!(
                        "user must be 1-{MAX_USER_CHARS} characters without control characters"
                    ),
                ));
            }
        }
        if let Some(aud) = &self.audience {
            if !crate::scope::valid_audience(aud) {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    "audience must be 1-256 visible ASCII characters without spaces or quotes",
                ));
            }
        }
        if let Some(held) = grantor_audience {
            match &self.audience {
                None => self.audience = Some(held.to_owned()),
                Some(aud) if aud == held => {}
                Some(aud) => {
                    return Err(refuse(
                        TokenRefusal::ScopeNotHeld,
                        format!(
                            "the caller is limited to audience '{held}' and cannot grant '{aud}'"
                        ),
                    ));
                }
            }
        }
        if self.scopes.is_empty() {
            return Err(refuse(
                TokenRefusal::InvalidField,
                "scopes must name at least one scope",
            ));
        }
        let mut unique: Vec<String> = Vec::with_capacity(self.scopes.len());
        for s in &self.scopes {
            if let Err(e) = scope::check(s) {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    format!("scope '{s}': {e}"),
                ));
            }
            if !unique.contains(s) {
                unique.push(s.clone());
            }
        }
        if unique.len() > MAX_SCOPES {
            return Err(refuse(
                TokenRefusal::InvalidField,
                format!("a token holds at most {MAX_SCOPES} scopes"),
            ));
        }
        for s in &unique {
            if grantors.iter().any(|held| !scope::granted(s, held)) {
                return Err(refuse(
                    TokenRefusal::ScopeNotHeld,
                    format!("scope '{s}' is not held by the caller, so it cannot be granted"),
                ));
            }
        }
        self.scopes = unique;
        if let Some(end) = self.expires_at {
            if end <= now {
                return Err(refuse(
                    TokenRefusal::InvalidField,
                    "the expiry must lie in the future",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `id` looks like a managed token id: `mt_` and 32 lowercase hex digits.
pub fn valid_token_id(id: &str) -> bool {
    id.strip_prefix("mt_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
