//! RFC 9421 HTTP Message Signatures, every registered algorithm: parsing `Signature-Input` /
//! `Signature`, building the signature base of a request or of a response (with `;req`
//! components of its request), loading keys, verifying, signing, and the time policy.
//! Pure: no I/O and no clock; choosing a signature, resolving its key and coverage policy belong to the gate.

mod alg;
mod base;
pub mod batch;
mod component;
mod ed25519;
mod error;
mod key;
mod parse;
mod request;
mod sign;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_algs;
mod view;

use ed25519_dalek::{Signature, VerifyingKey};

pub use alg::{Algorithm, HmacKey, MessageSigner, SignerKey, VerificationKey};
pub use base::{message_base, signature_base};
pub use component::Component;
use ed25519::strict_signature;
pub use ed25519::{SMALL_ORDER_ENCODINGS, StrongKey, verify_ed25519};
pub use error::SigError;
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
pub use view::{Message, RequestView, ResponseView, Target, normalize_authority};

/// The default algorithm of a registered key, and the one of Warden's batch path (§3.3.6).
pub const ALGORITHM: &str = "ed25519";

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
