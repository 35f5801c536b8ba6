//! Why a token of another issuer is refused ([`Refusal`]) or not accepted ([`Failure`]).

/// Why a token of another issuer is refused. Each says what is wrong without showing the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not a well-formed JWT (bad base64url or JSON, a duplicate header member, `crit`, a claim
    /// of the wrong type).
    Malformed,
    /// A JWT whose `iss` is no configured issuer, or that has no `iss`.
    UnknownIssuer,
    /// An opaque token that no introspection issuer takes.
    NoIssuer,
    /// `alg` is not one the issuer allows (`none` and HS* never are).
    AlgorithmNotAllowed,
    /// `typ` is not `at+jwt` (nor `JWT`, where the issuer allows it).
    WrongType,
    /// No key of the issuer has the token's `kid` (after a refetch, when one was allowed).
    UnknownKey,
    /// No `kid`, and several keys of the issuer fit the algorithm.
    AmbiguousKey,
    BadSignature,
    Expired,
    NoExpiry,
    NotYetValid,
    IssuedInFuture,
    /// `iat` older than `max_token_age`, or missing while that is set.
    TooOld,
    /// An introspection answer for another `iss`.
    WrongIssuer,
    WrongAudience,
    /// No client id claim.
    NoClient,
    /// A client id that cannot be used unmapped (characters outside Warden's client ids).
    BadClient,
    /// The introspection endpoint says the token is not active.
    Inactive,
    /// The introspection endpoint describes a refresh token.
    NotAccessToken,
    /// The token's client is mapped to a Warden client that is unknown or disabled.
    ClientDisabled,
}

impl Refusal {
    /// The `detail` and `error_description` of the 401 (no quotes or backslashes).
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Malformed => "the token is not a well-formed JWT",
            Refusal::UnknownIssuer => "the token's issuer (iss) is not one this service accepts",
            Refusal::NoIssuer => {
                "the token is neither Warden's nor one of an issuer this service accepts"
            }
            Refusal::AlgorithmNotAllowed => {
                "the token's signing algorithm (alg) is not accepted for its issuer"
            }
            Refusal::WrongType => "the token is not a JWT access token (typ at+jwt)",
            Refusal::UnknownKey => "the token's signing key (kid) is unknown to its issuer",
            Refusal::AmbiguousKey => {
                "the token names no signing key (kid) and its issuer has several"
            }
            Refusal::BadSignature => "the token's signature does not verify",
            Refusal::Expired => "the token has expired; obtain a new one",
            Refusal::NoExpiry => "the token has no expiry (exp)",
            Refusal::NotYetValid => "the token is not valid yet (nbf)",
            Refusal::IssuedInFuture => "the token was issued in the future (iat)",
            Refusal::TooOld => "the token is older than its issuer's tokens may be (iat)",
            Refusal::WrongIssuer => "the token was issued by another issuer than expected",
            Refusal::WrongAudience => {
                "the token was issued for another audience (aud) than this service"
            }
            Refusal::NoClient => "the token names no client (client_id)",
            Refusal::BadClient => {
                "the token's client id has characters Warden client ids cannot hold"
            }
            Refusal::Inactive => "the token is not active (revoked, expired or unknown)",
            Refusal::NotAccessToken => "the token is not an access token",
            Refusal::ClientDisabled => "the token's client is unknown or disabled here",
        }
    }
}

/// Why a token of another issuer was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Refused(Refusal),
    /// The issuer had to be asked (keys, introspection) and could not answer, and nothing
    /// cached decides; retry after this many seconds.
    Unavailable {
        retry_after: u64,
    },
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}
