//! The signing side: signs a request (or a response) with any [`MessageSigner`] and produces
//! the `Signature-Input` and `Signature` values, through the same base-building code as the
//! verifier.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sfv::{InnerList, Item, Key, KeyRef, Parameters, Parser};

use super::{
    Message, MessageSigner, ParsedSignature, RequestView, SigError, SigParam, message_base,
};

/// The two header values for one signature, plus the base that was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Signature-Input` value: `label=("@method" ...);created=...`.
    pub signature_input: String,
    /// `Signature` value: `label=:base64:`.
    pub signature: String,
    /// The signature base, for debugging (`warden sign --show-base`); not a header.
    pub base: String,
}

/// Signs `view` under `label`.
///
/// `components` are identifiers written as in a Signature-Input with or without the quotes:
/// `@method`, `content-digest`, `@query-param;name="a"`, `"example-dict";key="b"`.
/// `params` appear in the given order, which becomes part of the signed bytes.
pub fn sign(
    view: &RequestView<'_>,
    label: &str,
    components: &[&str],
    params: &[SigParam],
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignedHeaders, SigError> {
    sign_message(&Message::Request(*view), label, components, params, key)
}

/// [`sign`] for a message of either kind: a response may cover `@status` and the request it
/// answers (`"@method";req`, `"signature";req;key="sig1"`, ...).
pub fn sign_message(
    msg: &Message<'_>,
    label: &str,
    components: &[&str],
    params: &[SigParam],
    key: &(impl MessageSigner + ?Sized),
) -> Result<SignedHeaders, SigError> {
    let bad_label = || SigError::Malformed {
        field: "signature-input",
        reason: "label is not a valid structured field key".to_owned(),
    };
    let label_key = Key::from_string(label.to_owned()).map_err(|_| bad_label())?;
    let items = components
        .iter()
        .map(|c| component_item(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sf_params = Parameters::new();
    for param in params {
        let value = param.to_bare_item().ok_or(SigError::InvalidParameter {
            name: param.name().to_owned(),
            reason: "value cannot be serialised",
        })?;
        if sf_params
            .insert(KeyRef::constant(param.name()).to_owned(), value)
            .is_some()
        {
            return Err(SigError::InvalidParameter {
                name: param.name().to_owned(),
                reason: "parameter given twice",
            });
        }
    }
    let inner = InnerList::with_params(items, sf_params);
    // The same validation and base as a verifier would apply to the result.
    let sig = ParsedSignature::from_member(label_key.as_str(), &inner, Vec::new(), msg.target())?;
    let base = message_base(msg, &sig)?;
    let signature = key.sign_base(base.as_bytes())?;
    Ok(SignedHeaders {
        signature_input: format!("{}={}", sig.label(), sig.signature_params_value()),
        signature: format!("{}=:{}:", sig.label(), STANDARD.encode(signature)),
        base,
    })
}

/// Parses one identifier as given to [`sign`] into its SF Item.
fn component_item(text: &str) -> Result<Item, SigError> {
    let text = text.trim();
    let quoted = if text.starts_with('"') {
        text.to_owned()
    } else {
        match text.split_once(';') {
            Some((name, params)) => format!("\"{name}\";{params}"),
            None => format!("\"{text}\""),
        }
    };
    Parser::new(&quoted)
        .parse::<Item>()
        .map_err(|_| SigError::InvalidComponent {
            component: text.to_owned(),
            reason: "not a valid component identifier",
        })
}
