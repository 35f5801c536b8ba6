//! `Signature-Input` and `Signature` (RFC 9421 §4.1, §4.2) parsed into [`ParsedSignature`]s:
//! strict SF Dictionaries, labels paired and unique, components and parameters validated.

use std::convert::Infallible;

use http::HeaderMap;
use sfv::visitor::{DictionaryVisitor, EntryVisitor};
use sfv::{BareItem, Dictionary, InnerList, KeyRef, ListEntry, Parser};

use super::component::Component;
use super::{SigError, Target};

const SIGNATURE_INPUT: &str = "signature-input";
const SIGNATURE: &str = "signature";

/// One signature parameter (RFC 9421 §2.3) with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigParam {
    /// `created`: UNIX time of signing.
    Created(i64),
    /// `expires`: UNIX time after which the signature is void.
    Expires(i64),
    /// `nonce`: a per-signature random value.
    Nonce(String),
    /// `alg`: the algorithm name; only `ed25519` is accepted here.
    Alg(String),
    /// `keyid`: names the key.
    KeyId(String),
    /// `tag`: application tag used to select the signature.
    Tag(String),
}

impl SigParam {
    /// The parameter's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            SigParam::Created(_) => "created",
            SigParam::Expires(_) => "expires",
            SigParam::Nonce(_) => "nonce",
            SigParam::Alg(_) => "alg",
            SigParam::KeyId(_) => "keyid",
            SigParam::Tag(_) => "tag",
        }
    }

    /// The value as an SF bare item; `None` when it cannot be one (an out-of-range integer,
    /// a string with characters outside printable ASCII).
    pub(crate) fn to_bare_item(&self) -> Option<BareItem> {
        match self {
            SigParam::Created(n) | SigParam::Expires(n) => {
                sfv::Integer::try_from(*n).ok().map(BareItem::Integer)
            }
            SigParam::Nonce(s) | SigParam::Alg(s) | SigParam::KeyId(s) | SigParam::Tag(s) => {
                sfv::String::from_string(s.clone())
                    .ok()
                    .map(BareItem::String)
            }
        }
    }

    fn from_sf(name: &str, value: &BareItem) -> Result<SigParam, SigError> {
        let invalid = |reason| SigError::InvalidParameter {
            name: name.to_owned(),
            reason,
        };
        let integer = || match value {
            BareItem::Integer(n) if i64::from(*n) >= 0 => Ok(i64::from(*n)),
            _ => Err(invalid("must be a non-negative integer")),
        };
        let string = || match value {
            BareItem::String(s) => Ok(s.as_str().to_owned()),
            _ => Err(invalid("must be a string")),
        };
        Ok(match name {
            "created" => SigParam::Created(integer()?),
            "expires" => SigParam::Expires(integer()?),
            "nonce" => SigParam::Nonce(string()?),
            "alg" => SigParam::Alg(string()?),
            "keyid" => SigParam::KeyId(string()?),
            "tag" => SigParam::Tag(string()?),
            // Project policy: an unknown parameter is refused rather than ignored.
            _ => return Err(invalid("unknown signature parameter")),
        })
    }
}

/// The signature parameters in the order received (or chosen by the signer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignatureParams(Vec<SigParam>);

impl SignatureParams {
    /// All parameters, in order.
    pub fn iter(&self) -> impl Iterator<Item = &SigParam> {
        self.0.iter()
    }

    /// `created`, if present.
    pub fn created(&self) -> Option<i64> {
        self.0.iter().find_map(|p| match p {
            SigParam::Created(t) => Some(*t),
            _ => None,
        })
    }

    /// `expires`, if present.
    pub fn expires(&self) -> Option<i64> {
        self.0.iter().find_map(|p| match p {
            SigParam::Expires(t) => Some(*t),
            _ => None,
        })
    }

    /// `nonce`, if present.
    pub fn nonce(&self) -> Option<&str> {
        self.string(|p| matches!(p, SigParam::Nonce(_)))
    }

    /// `alg`, if present.
    pub fn alg(&self) -> Option<&str> {
        self.string(|p| matches!(p, SigParam::Alg(_)))
    }

    /// `keyid`, if present.
    pub fn keyid(&self) -> Option<&str> {
        self.string(|p| matches!(p, SigParam::KeyId(_)))
    }

    /// `tag`, if present.
    pub fn tag(&self) -> Option<&str> {
        self.string(|p| matches!(p, SigParam::Tag(_)))
    }

    fn string(&self, wanted: impl Fn(&SigParam) -> bool) -> Option<&str> {
        self.0.iter().find(|p| wanted(p)).and_then(|p| match p {
            SigParam::Nonce(s) | SigParam::Alg(s) | SigParam::KeyId(s) | SigParam::Tag(s) => {
                Some(s.as_str())
            }
            SigParam::Created(_) | SigParam::Expires(_) => None,
        })
    }
}

/// One labelled signature: its covered components and parameters as received, the signature
/// bytes, and the exact `@signature-params` value.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSignature {
    label: String,
    components: Vec<Component>,
    params: SignatureParams,
    signature: Vec<u8>,
    params_value: String,
}

impl ParsedSignature {
    /// Validates one `Signature-Input` member (an Inner List) and keeps its strict
    /// serialisation, in received order, as the `@signature-params` value (RFC 9421 §3.2 step 7).
    pub(crate) fn from_member(
        label: &str,
        inner: &InnerList,
        signature: Vec<u8>,
        target: Target,
    ) -> Result<ParsedSignature, SigError> {
        let mut components: Vec<Component> = Vec::with_capacity(inner.items.len());
        for item in &inner.items {
            let component = Component::from_item(item.clone(), target)?;
            if components.iter().any(|c| c.same_as(&component)) {
                return Err(SigError::InvalidComponent {
                    component: component.identifier().to_owned(),
                    reason: "component is covered twice",
                });
            }
            components.push(component);
        }
        let params = inner
            .params
            .iter()
            .map(|(name, value)| SigParam::from_sf(name.as_str(), value))
            .collect::<Result<Vec<_>, _>>()?;
        // Serialized in place (the inner list is not cloned into a list to serialize it).
        let mut params_value = String::with_capacity(128);
        {
            let mut list = sfv::ListSerializer::with_buffer(&mut params_value);
            let mut items = list.inner_list();
            items.items(&inner.items);
            items.finish().parameters(&inner.params);
            let _ = list.finish();
        }
        Ok(ParsedSignature {
            label: label.to_owned(),
            components,
            params: SignatureParams(params),
            signature,
            params_value,
        })
    }

    /// The label (not signed, may be renamed in transit: select by `keyid` / `tag`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The covered components, in order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The signature parameters, in order.
    pub fn params(&self) -> &SignatureParams {
        &self.params
    }

    /// The raw signature bytes from the `Signature` field.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// The `@signature-params` value: the `Signature-Input` member without its label.
    pub fn signature_params_value(&self) -> &str {
        &self.params_value
    }

    /// True when `name` (e.g. `@method`, `content-digest`) of the signed message itself is
    /// covered as a whole, that is in any form but a single Dictionary member (`;key`) and not
    /// taken from the related request (`;req`).
    pub fn covers(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name() == name && !c.is_partial() && !c.is_req())
    }

    /// True when `name` of the related request is covered as a whole (`;req`, not `;key`).
    pub fn covers_req(&self, name: &str) -> bool {
        self.components
            .iter()
            .any(|c| c.name() == name && !c.is_partial() && c.is_req())
    }
}

/// Parses the request's `Signature-Input` and `Signature` fields, joining multiple field lines.
/// Neither present gives [`SigError::Missing`].
pub fn parse_signatures(headers: &HeaderMap) -> Result<Vec<ParsedSignature>, SigError> {
    parse_message_signatures(headers, Target::Request)
}

/// Parses the signatures of a message of either kind: on a response, `@status` and `;req`
/// components are allowed and request components need `;req`.
pub fn parse_message_signatures(
    headers: &HeaderMap,
    target: Target,
) -> Result<Vec<ParsedSignature>, SigError> {
    let input = joined(headers, SIGNATURE_INPUT);
    let signature = joined(headers, SIGNATURE);
    match (input, signature) {
        (None, None) => Err(SigError::Missing),
        (input, signature) => parse_fields(
            input.as_deref().unwrap_or_default(),
            signature.as_deref().unwrap_or_default(),
            target,
        ),
    }
}

fn joined(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(line.as_bytes());
    }
    Some(out)
}

/// Parses combined `Signature-Input` and `Signature` field values (lines joined with `", "`)
/// into signatures in `Signature-Input` order. Any error refuses the whole message: SF syntax,
/// a duplicate label, a label missing from either field, a wrong member type, or an invalid
/// component or parameter in any member.
pub fn parse_signature_fields(
    signature_input: &[u8],
    signature: &[u8],
) -> Result<Vec<ParsedSignature>, SigError> {
    parse_fields(signature_input, signature, Target::Request)
}

/// [`parse_signature_fields`] for a message of either kind.
pub fn parse_fields(
    signature_input: &[u8],
    signature: &[u8],
    target: Target,
) -> Result<Vec<ParsedSignature>, SigError> {
    let inputs = parse_unique_dictionary(SIGNATURE_INPUT, signature_input)?;
    let signatures = parse_unique_dictionary(SIGNATURE, signature)?;
    if let Some(label) = signatures.keys().find(|k| !inputs.contains_key(*k)) {
        return Err(SigError::LabelMismatch {
            label: label.as_str().to_owned(),
        });
    }
    let mut parsed = Vec::with_capacity(inputs.len());
    for (key, member) in &inputs {
        let label = key.as_str();
        let ListEntry::InnerList(inner) = member else {
            return Err(SigError::Malformed {
                field: SIGNATURE_INPUT,
                reason: format!("member {label} is not an inner list"),
            });
        };
        let bytes = match signatures.get(key) {
            None => {
                return Err(SigError::LabelMismatch {
                    label: label.to_owned(),
                });
            }
            Some(ListEntry::Item(item)) => match &item.bare_item {
                BareItem::ByteSequence(bytes) => bytes.clone(),
                _ => return Err(not_bytes(label)),
            },
            Some(ListEntry::InnerList(_)) => return Err(not_bytes(label)),
        };
        parsed.push(ParsedSignature::from_member(label, inner, bytes, target)?);
    }
    if parsed.is_empty() {
        return Err(SigError::Missing);
    }
    Ok(parsed)
}

fn not_bytes(label: &str) -> SigError {
    SigError::Malformed {
        field: SIGNATURE,
        reason: format!("member {label} is not a byte sequence"),
    }
}

/// Parses an SF Dictionary and refuses duplicate keys, which a plain parse would silently
/// collapse into the last one (RFC 9651 §4.2.2; RFC 9421 §4 requires unique labels).
fn parse_unique_dictionary(field: &'static str, value: &[u8]) -> Result<Dictionary, SigError> {
    let (dict, duplicate) = Parser::new(value)
        .parse_dictionary_with_visitor(UniqueKeys::default())
        .map_err(|e| SigError::Malformed {
            field,
            reason: e.to_string(),
        })?;
    match duplicate {
        Some(label) => Err(SigError::DuplicateLabel { label }),
        None => Ok(dict),
    }
}

/// A Dictionary visitor that notes the first repeated key.
#[derive(Default)]
struct UniqueKeys {
    dict: Dictionary,
    duplicate: Option<String>,
}

impl<'de> DictionaryVisitor<'de> for UniqueKeys {
    type Out = (Dictionary, Option<String>);
    type Error = Infallible;

    fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
        if self.duplicate.is_none() && self.dict.contains_key(key) {
            self.duplicate = Some(key.as_str().to_owned());
        }
        DictionaryVisitor::entry(&mut self.dict, key)
    }

    fn finish(self) -> Result<Self::Out, Self::Error> {
        Ok((self.dict, self.duplicate))
    }
}
