//! RFC 9421 HTTP Message Signatures, every registered algorithm: parsing `Signature-Input` /
//! `Signature`, building the signature base of a request or of a response (with `;req`
//! components of its request), loading keys, verifying, signing, and the time policy.
//! Pure: no I/O and no clock; choosing a signature, resolving its key and coverage policy belong to the gate.

mod alg;
mod base;
pub mod batch;
mod component;
mod key;
mod parse;
mod request;
mod sign;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_algs;

use std::borrow::Cow;
use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderMap;

pub use alg::{Algorithm, HmacKey, MessageSigner, SignerKey, VerificationKey};
pub use base::{message_base, signature_base};
pub use component::Component;
pub use key::{
    HMAC_MIN_BYTES, KeyError, RSA_MIN_BITS, generate, parse_hmac_secret, parse_private_key,
    parse_public_key, parse_signer_key, parse_verification_key, stored_verification_key,
};
pub use parse::{
    ParsedSignature, SigParam, SignatureParams, parse_fields, parse_message_signatures,
    parse_signature_fields, parse_signatures,
};
pub use request::{COVER_IF_PRESENT, SignOptions, default_components, sign_request};
pub use sign::{SignedHeaders, sign, sign_message};

/// The default algorithm of a registered key, and the one of Warden's batch path (§3.3.6).
pub const ALGORITHM: &str = "ed25519";

/// Why a signature was refused. [`SigError::is_malformed`] tells a 400 (the request is broken)
/// from a 401 (the request does not authenticate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Neither `Signature-Input` nor `Signature` carries a signature.
    #[error("no signature in the request")]
    Missing,
    /// A field is not a valid SF Dictionary, or a member has the wrong type.
    #[error("malformed {field} field: {reason}")]
    Malformed {
        /// `signature-input` or `signature`.
        field: &'static str,
        /// What is wrong, without the field value.
        reason: String,
    },
    /// The same label appears twice (across or within field lines).
    #[error("duplicate signature label {label}")]
    DuplicateLabel {
        /// The repeated label.
        label: String,
    },
    /// A label is in one of `Signature-Input` / `Signature` but not in the other.
    #[error("signature label {label} is not in both signature-input and signature")]
    LabelMismatch {
        /// The unpaired label.
        label: String,
    },
    /// A covered component identifier is not acceptable on a request (RFC 9421 §2, §2.5).
    #[error("invalid component {component}: {reason}")]
    InvalidComponent {
        /// The identifier as serialised (or as given to the signer).
        component: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A signature parameter is unknown, repeated or of the wrong type (RFC 9421 §2.3).
    #[error("invalid signature parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A covered component cannot be taken from this request (missing field, missing query
    /// parameter or dictionary member, unusable value).
    #[error("cannot resolve component {component}: {reason}")]
    ComponentUnavailable {
        /// The identifier as serialised.
        component: String,
        /// Why the value cannot be built.
        reason: &'static str,
    },
    /// The `alg` parameter names another algorithm than the key's.
    #[error("signature algorithm {alg} is not allowed")]
    AlgorithmNotAllowed {
        /// The `alg` value received.
        alg: String,
    },
    /// The signature does not verify (or is not 64 bytes long).
    #[error("signature verification failed")]
    InvalidSignature,
    /// `expires` lies in the past (beyond the allowed skew).
    #[error("signature expired at {expires}")]
    Expired {
        /// The `expires` parameter.
        expires: i64,
    },
    /// `created` lies in the future (beyond the allowed skew).
    #[error("signature created in the future at {created}")]
    CreatedInFuture {
        /// The `created` parameter.
        created: i64,
    },
    /// `created` is older than the maximum age.
    #[error("signature created at {created} is too old")]
    TooOld {
        /// The `created` parameter.
        created: i64,
    },
    /// Policy requires `created` and the signature has none.
    #[error("signature has no created parameter")]
    MissingCreated,
    /// The signer's key failed to sign (an RNG failure; not a property of the message).
    #[error("signing failed")]
    SigningFailed,
}

impl SigError {
    /// True when the request itself is broken (answer 400): a field that is not valid SF, a
    /// wrong type, a label mismatch or duplicate, an unacceptable component identifier or
    /// parameter. False when the request merely fails to authenticate (answer 401).
    pub fn is_malformed(&self) -> bool {
        match self {
            SigError::Malformed { .. }
            | SigError::DuplicateLabel { .. }
            | SigError::LabelMismatch { .. }
            | SigError::InvalidComponent { .. }
            | SigError::InvalidParameter { .. } => true,
            SigError::Missing
            | SigError::ComponentUnavailable { .. }
            | SigError::AlgorithmNotAllowed { .. }
            | SigError::InvalidSignature
            | SigError::Expired { .. }
            | SigError::CreatedInFuture { .. }
            | SigError::TooOld { .. }
            | SigError::MissingCreated
            | SigError::SigningFailed => false,
        }
    }
}

/// What the verifier (and signer) sees of a request. Build it with [`RequestView::new`].
///
/// `scheme` and `authority` must be the client's view (e.g. the configured public URL), never
/// taken from unauthenticated `X-Forwarded-*` headers (RFC 9421 §7.4.3).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method exactly as received (case-sensitive).
    pub method: &'a str,
    /// `http` or `https`; lowercased when used.
    pub scheme: &'a str,
    /// External `host[:port]`; the host is lowercased and a default port dropped when used.
    pub authority: &'a str,
    /// Raw (undecoded) absolute path; empty means `/`.
    pub path: &'a str,
    /// Raw query without the `?`; `None` when the target has no `?`.
    pub query: Option<&'a str>,
    /// The request header section.
    pub headers: &'a HeaderMap,
    /// The request-target as on the HTTP/1.1 request line when it is not origin-form
    /// (absolute-form, authority-form for CONNECT, or `*`). Default `None`: origin-form,
    /// built from `path` and `query`.
    pub request_target: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// A view of an origin-form request.
    pub fn new(
        method: &'a str,
        scheme: &'a str,
        authority: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> Self {
        RequestView {
            method,
            scheme,
            authority,
            path,
            query,
            headers,
            request_target: None,
        }
    }

    /// The same view with a non-origin-form request-target (see [`RequestView::request_target`]).
    pub fn with_request_target(self, request_target: &'a str) -> Self {
        RequestView {
            request_target: Some(request_target),
            ..self
        }
    }

    /// The path, `/` when empty (`@path`, RFC 9421 §2.2.6).
    pub(crate) fn path_or_root(&self) -> &'a str {
        if self.path.is_empty() { "/" } else { self.path }
    }

    /// The lowercased scheme (`@scheme`).
    pub(crate) fn normalized_scheme(&self) -> Cow<'a, str> {
        lowercase(self.scheme)
    }

    /// The normalised authority (`@authority`, RFC 9421 §2.2.3).
    pub(crate) fn normalized_authority(&self) -> Cow<'a, str> {
        normalize_authority(self.scheme, self.authority)
    }
}

// Header values can hold credentials, so Debug shows only their names.
impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("has_query", &self.query.is_some())
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("request_target", &self.request_target)
            .finish()
    }
}

/// Which kind of message a signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Request,
    /// A response: `@status` is allowed, request components need `;req` (RFC 9421 §2.4).
    Response,
}

/// What the verifier (and signer) sees of a response, and of the request it answers, which
/// `;req` components read.
#[derive(Clone, Copy)]
pub struct ResponseView<'a> {
    /// The status code (`@status`).
    pub status: u16,
    /// The response header section.
    pub headers: &'a HeaderMap,
    /// The related request; `None` when it is not known (then any `;req` component fails).
    pub request: Option<RequestView<'a>>,
}

impl fmt::Debug for ResponseView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseView")
            .field("status", &self.status)
            .field("header_names", &self.headers.keys().collect::<Vec<_>>())
            .field("request", &self.request)
            .finish()
    }
}

/// The message a signature base is built from.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Request(RequestView<'a>),
    Response(ResponseView<'a>),
}

impl Message<'_> {
    /// Which kind of message this is.
    pub fn target(&self) -> Target {
        match self {
            Message::Request(_) => Target::Request,
            Message::Response(_) => Target::Response,
        }
    }
}

/// Lowercases the host and drops the scheme's default port (`:443` for https, `:80` for http,
/// and an empty port), as `@authority` requires (RFC 9421 §2.2.3).
pub fn normalize_authority<'a>(scheme: &str, authority: &'a str) -> Cow<'a, str> {
    let host = match authority.rsplit_once(':') {
        // The part before the colon must not hold another colon unless it is a bracketed IPv6
        // literal, else the colon belongs to the address.
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            let default = (scheme.eq_ignore_ascii_case("https") && port == "443")
                || (scheme.eq_ignore_ascii_case("http") && port == "80")
                || port.is_empty();
            if default { host } else { authority }
        }
        _ => authority,
    };
    lowercase(host)
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// The canonical encodings of the eight points of small order (the curve's torsion subgroup).
/// A signature whose `R` is one of them is refused, as `verify_strict` refuses it.
pub const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = {
    const fn point(first: u8, last: u8) -> [u8; 32] {
        let mut p = [0u8; 32];
        p[0] = first;
        p[31] = last;
        p
    }
    const A: [u8; 32] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    const B: [u8; 32] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    const fn with_sign(mut p: [u8; 32]) -> [u8; 32] {
        p[31] |= 0x80;
        p
    }
    let mut minus_one = [0xff; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    [
        point(0x01, 0x00),
        A,
        point(0x00, 0x80),
        B,
        minus_one,
        with_sign(B),
        point(0x00, 0x00),
        with_sign(A),
    ]
};

/// Verifies an Ed25519 signature over the raw base bytes (no pre-hash) with the semantics of
/// `verify_strict`: a non-canonical `s` or `R`, a small-order `R` and a weak key all fail. The
/// signature must be 64 bytes.
///
/// Cheaper than `verify_strict`, which decompresses `R` to test its order: the recomputed `R`
/// is compared as a canonical encoding, so a small-order `R` can only match through one of the
/// eight [`SMALL_ORDER_ENCODINGS`], which are refused up front (libsodium does the same).
pub fn verify_ed25519(base: &[u8], signature: &[u8], key: &VerifyingKey) -> Result<(), SigError> {
    use ed25519_dalek::Verifier as _;
    if key.is_weak() {
        return Err(SigError::InvalidSignature);
    }
    let signature = strict_signature(signature)?;
    key.verify(base, &signature)
        .map_err(|_| SigError::InvalidSignature)
}

/// The checks on the signature itself that come before the curve arithmetic: 64 bytes, and an
/// `R` not of small order. (A non-canonical `s` fails in the verification itself, single or
/// batch; the key's weakness is checked by the caller, once per key where it can.)
fn strict_signature(signature: &[u8]) -> Result<Signature, SigError> {
    let signature = Signature::from_slice(signature).map_err(|_| SigError::InvalidSignature)?;
    if SMALL_ORDER_ENCODINGS.contains(signature.r_bytes()) {
        return Err(SigError::InvalidSignature);
    }
    Ok(signature)
}

/// An Ed25519 public key known not to be weak (of small order), checked once when the key is
/// loaded instead of on every verification.
#[derive(Debug, Clone, Copy)]
pub struct StrongKey(VerifyingKey);

impl StrongKey {
    /// `None` for a weak key, which [`verify_ed25519`] would refuse every signature of.
    pub fn new(key: VerifyingKey) -> Option<Self> {
        (!key.is_weak()).then_some(Self(key))
    }

    pub fn key(&self) -> &VerifyingKey {
        &self.0
    }
}

/// A signature whose base is rebuilt and whose strict checks passed: what is left is the
/// Ed25519 arithmetic, alone ([`verify_ed25519`]) or in a batch ([`batch::BatchVerifier`]).
pub struct Prepared {
    pub base: Vec<u8>,
    pub signature: Signature,
}

/// Everything [`verify`] does but the curve arithmetic (the key's weakness was checked when it
/// became a [`StrongKey`]).
pub fn prepare(
    view: &RequestView<'_>,
    sig: &ParsedSignature,
    _key: &StrongKey,
) -> Result<Prepared, SigError> {
    if let Some(alg) = sig.params().alg()
        && alg != ALGORITHM
    {
        return Err(SigError::AlgorithmNotAllowed {
            alg: alg.to_owned(),
        });
    }
    let base = signature_base(view, sig)?;
    let signature = strict_signature(sig.signature())?;
    Ok(Prepared {
        base: base.into_bytes(),
        signature,
    })
}

/// Rebuilds the base of `sig` from `view` and verifies it with `key`. An `alg` parameter other
/// than `ed25519` fails first (RFC 9421 §3.2 step 6). Time, coverage and key selection are the
/// caller's policy (see [`check_times`], [`ParsedSignature::covers`]).
pub fn verify(
    view: &RequestView<'_>,
    sig: &ParsedSignature,
    key: &VerifyingKey,
) -> Result<(), SigError> {
    if let Some(alg) = sig.params().alg()
        && alg != ALGORITHM
    {
        return Err(SigError::AlgorithmNotAllowed {
            alg: alg.to_owned(),
        });
    }
    let base = signature_base(view, sig)?;
    verify_ed25519(base.as_bytes(), sig.signature(), key)
}

/// Rebuilds the base of `sig` over `msg` and verifies it with `key`, of any algorithm. An
/// `alg` parameter other than the key's algorithm fails before any crypto: the algorithm is
/// the key's, never the signature's (RFC 9421 §3.2 step 6, §7.3.6). Time, coverage and key
/// selection are the caller's policy.
pub fn verify_message(
    msg: &Message<'_>,
    sig: &ParsedSignature,
    key: &VerificationKey,
) -> Result<(), SigError> {
    check_alg(sig, key.alg())?;
    let base = message_base(msg, sig)?;
    key.verify(base.as_bytes(), sig.signature())
}

/// Refuses a signature whose `alg` names another algorithm than `alg` (absent `alg`: the
/// key's algorithm applies).
pub fn check_alg(sig: &ParsedSignature, alg: Algorithm) -> Result<(), SigError> {
    match sig.params().alg() {
        Some(named) if named != alg.name() => Err(SigError::AlgorithmNotAllowed {
            alg: named.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// The time policy, with the clock injected (`now` in UNIX seconds):
/// - `expires` earlier than `now - skew` fails;
/// - `created` later than `now + skew` fails;
/// - `created` more than `max_age` seconds before `now` fails;
/// - no `created` fails when `require_created`.
pub fn check_times(
    params: &SignatureParams,
    now: i64,
    max_age: u64,
    skew: u64,
    require_created: bool,
) -> Result<(), SigError> {
    // i128 so that no combination of i64 timestamps and u64 durations can overflow.
    let now = i128::from(now);
    let skew = i128::from(skew);
    if let Some(expires) = params.expires()
        && i128::from(expires) < now - skew
    {
        return Err(SigError::Expired { expires });
    }
    match params.created() {
        Some(created) if i128::from(created) > now + skew => {
            Err(SigError::CreatedInFuture { created })
        }
        Some(created) if now - i128::from(created) > i128::from(max_age) => {
            Err(SigError::TooOld { created })
        }
        Some(_) => Ok(()),
        None if require_created => Err(SigError::MissingCreated),
        None => Ok(()),
    }
}
