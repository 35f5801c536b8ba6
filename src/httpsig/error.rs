//! Why a signature was refused: one error type for parsing, building the base and verifying.

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
