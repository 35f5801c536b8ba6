//! The paths of the token API: the compiled `endpoints.tokens` base (also used for
//! `endpoints.webhooks`), what a path under it names, and the shape of a token id.

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

/// Whether `id` looks like a managed token id: `mt_` and 32 lowercase hex digits.
pub fn valid_token_id(id: &str) -> bool {
    id.strip_prefix("mt_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}
