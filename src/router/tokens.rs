//! The paths of the token API: the compiled `endpoints.tokens` base (also used for
//! `endpoints.webhooks`) and what a path under it names. The API itself is in
//! `issuer/tokens_api.rs`.

#[derive(Debug, Clone, PartialEq, Eq)]
enum BaseSeg {
    Literal(String),
    Account,
}

/// The compiled `endpoints.tokens` base path: literal segments and one `{account}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensBase {
    pattern: String,
    segments: Vec<BaseSeg>,
}

/// What a path under the base names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest<'a> {
    /// `{base}`: the account's tokens.
    Collection,
    /// `{base}/{tokenId}`.
    Token(&'a str),
    /// `{base}/{tokenId}/{operation}`.
    Operation(&'a str, &'a str),
}

/// A path under the base, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensPath<'a> {
    /// The `{account}` segment, undecoded.
    pub account: &'a str,
    pub rest: Rest<'a>,
}

impl TokensBase {
    /// Parses a base path such as `/ws/accounts/{account}/credentials/tokens`.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("'{pattern}' must start with /"));
        }
        let mut segments = Vec::new();
        for seg in pattern[1..].split('/') {
            segments.push(match seg {
                "{account}" => BaseSeg::Account,
                "" => return Err(format!("'{pattern}' has an empty segment")),
                s if s.contains(['{', '}', '*', '?', '#', '%']) => {
                    return Err(format!(
                        "in '{pattern}', segment '{s}' may hold only literal text or {{account}}"
                    ));
                }
                s => BaseSeg::Literal(s.to_owned()),
            });
        }
        if segments.iter().filter(|s| **s == BaseSeg::Account).count() != 1 {
            return Err(format!(
                "'{pattern}' must hold exactly one {{account}} segment"
            ));
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            segments,
        })
    }

    /// Splits `path` into the base's segments and what follows, if it starts with the base.
    fn split<'p>(&self, path: &'p str) -> Option<(&'p str, std::str::Split<'p, char>)> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut account = None;
        for seg in &self.segments {
            let p = parts.next()?;
            match seg {
                BaseSeg::Literal(lit) if p == lit => {}
                BaseSeg::Literal(_) => return None,
                BaseSeg::Account if p.is_empty() => return None,
                BaseSeg::Account => account = Some(p),
            }
        }
        Some((account?, parts))
    }

    /// Whether `path` is the base or lies under it: all of that is Warden's, never forwarded.
    pub fn claims(&self, path: &str) -> bool {
        self.split(path).is_some()
    }

    /// What `path` names; `None` for paths under the base that name nothing.
    pub fn resolve<'p>(&self, path: &'p str) -> Option<TokensPath<'p>> {
        let (account, parts) = self.split(path)?;
        let rest: Vec<&str> = parts.collect();
        let rest = match rest[..] {
            [] => Rest::Collection,
            [id] if !id.is_empty() => Rest::Token(id),
            [id, op] if !id.is_empty() => Rest::Operation(id, op),
            _ => return None,
        };
        Some(TokensPath { account, rest })
    }

    /// The base path as configured, `{account}` included.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The path of one token of `account`, for `Location`.
    pub fn token_path(&self, account: &str, id: &str) -> String {
        format!("{}/{id}", self.pattern.replace("{account}", account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TokensBase {
        TokensBase::parse("/ws/accounts/{account}/credentials/tokens").unwrap()
    }

    #[test]
    fn the_base_splits_account_id_and_operation() {
        let b = base();
        let p = |s| b.resolve(s).map(|p| (p.account, p.rest));
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens"),
            Some(("acme", Rest::Collection))
        );
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens/mt_1"),
            Some(("acme", Rest::Token("mt_1")))
        );
        assert_eq!(
            p("/ws/accounts/acme/credentials/tokens/mt_1/enable"),
            Some(("acme", Rest::Operation("mt_1", "enable")))
        );
        assert_eq!(p("/ws/accounts/acme/credentials/tokens/"), None);
        assert_eq!(p("/ws/accounts/acme/credentials/tokens/a/b/c"), None);
        assert_eq!(p("/ws/accounts//credentials/tokens"), None);
        assert!(b.claims("/ws/accounts/acme/credentials/tokens/a/b/c"));
        assert!(!b.claims("/ws/accounts/acme/credentials/tokensx"));
        assert!(!b.claims("/ws/accounts/acme/credentials"));
        assert!(!b.claims("/ws/accounts//credentials/tokens"));
        assert_eq!(
            b.token_path("acme", "mt_1"),
            "/ws/accounts/acme/credentials/tokens/mt_1"
        );
    }

    #[test]
    fn bad_bases_are_refused() {
        assert!(TokensBase::parse("ws/{account}").is_err());
        assert!(TokensBase::parse("/ws/tokens").is_err());
        assert!(TokensBase::parse("/ws/{account}/{account}").is_err());
        assert!(TokensBase::parse("/ws//{account}").is_err());
        assert!(TokensBase::parse("/ws/{account}/").is_err());
        assert!(TokensBase::parse("/ws/{acct}/{account}").is_err());
        assert!(TokensBase::parse("/ws/*/{account}").is_err());
        assert!(TokensBase::parse("/{account}/tokens").is_ok());
    }
}
