//! Covered component identifiers (RFC 9421 §2): which ones a request or response signature
//! may use, and how each one's value is taken from a [`Message`].

use http::HeaderName;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sfv::{BareItem, Dictionary, FieldType, Item, KeyRef, List, ListEntry, ListSerializer, Parser};

use super::{Message, RequestView, SigError, Target};

/// The WHATWG application/x-www-form-urlencoded percent-encode set: everything but ASCII
/// alphanumerics and `*-._` (RFC 9421 §2.2.8). Space becomes `%20`, never `+`.
const FORM_URLENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// One covered component, validated for a request or response signature. It keeps the
/// identifier as received, parameters in the received order, since that order is part of the
/// signed bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    item: Item,
    identifier: String,
    kind: Kind,
    /// `;req`: taken from the request a response answers (RFC 9421 §2.4).
    req: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Method,
    TargetUri,
    Authority,
    Scheme,
    RequestTarget,
    Path,
    Query,
    QueryParam(String),
    Status,
    Field(HeaderName, FieldMode),
}

#[derive(Debug, Clone, PartialEq)]
enum FieldMode {
    /// The canonicalised field value (§2.1).
    Raw,
    /// Strict re-serialisation as the field's known structured type (§2.1.1).
    Sf(SfType),
    /// One Dictionary member (§2.1.2).
    Key(String),
    /// Each field line as a Byte Sequence (§2.1.3).
    Bs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SfType {
    Item,
    List,
    Dictionary,
}

/// The structured type of the fields `;sf` may be used with. A field not listed here has no
/// known type, and `;sf` on it is an error (RFC 9421 §2.5).
fn known_sf_type(name: &str) -> Option<SfType> {
    match name {
        "accept-signature"
        | "cdn-cache-control"
        | "content-digest"
        | "example-dict"
        | "priority"
        | "repr-digest"
        | "signature"
        | "signature-input"
        | "want-content-digest"
        | "want-repr-digest" => Some(SfType::Dictionary),
        "accept-ch" | "cache-status" | "client-cert-chain" | "proxy-status" => Some(SfType::List),
        "client-cert" | "idempotency-key" => Some(SfType::Item),
        _ => None,
    }
}

impl Component {
    /// Validates one Inner List item of a `Signature-Input` member as a component of a
    /// signature over a `target` message.
    pub(crate) fn from_item(item: Item, target: Target) -> Result<Component, SigError> {
        let identifier = item.serialize();
        let invalid = |reason: &'static str| SigError::InvalidComponent {
            component: identifier.clone(),
            reason,
        };
        let BareItem::String(name) = &item.bare_item else {
            return Err(SigError::Malformed {
                field: "signature-input",
                reason: "a component identifier is not a string".to_owned(),
            });
        };
        let name = name.as_str();
        if name.is_empty() {
            return Err(invalid("empty component name"));
        }
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("component names must be lowercase"));
        }

        let (mut sf, mut bs, mut key, mut query_name, mut req) = (false, false, None, None, false);
        for (param, value) in &item.params {
            let flag = || match value {
                BareItem::Boolean(true) => Ok(true),
                _ => Err(invalid("parameter must be a boolean true")),
            };
            let string = || match value {
                BareItem::String(s) => Ok(s.as_str().to_owned()),
                _ => Err(invalid("parameter must be a string")),
            };
            match param.as_str() {
                "sf" => sf = flag()?,
                "bs" => bs = flag()?,
                "key" => key = Some(string()?),
                "name" => query_name = Some(string()?),
                "req" if target == Target::Request => {
                    return Err(invalid("req is not allowed on a request signature"));
                }
                "req" => req = flag()?,
                "tr" => return Err(invalid("trailers are not supported")),
                _ => return Err(invalid("unknown component parameter")),
            }
        }

        let kind = if let Some(derived) = name.strip_prefix('@') {
            if sf || bs || key.is_some() {
                return Err(invalid("sf, key and bs do not apply to derived components"));
            }
            if query_name.is_some() && derived != "query-param" {
                return Err(invalid("name applies only to @query-param"));
            }
            // Request-derived components on a response must say which request (`;req`).
            let request_side = target == Target::Request || req;
            if !request_side && derived != "status" && derived != "signature-params" {
                return Err(invalid(
                    "a request component on a response signature needs req",
                ));
            }
            match derived {
                "method" => Kind::Method,
                "target-uri" => Kind::TargetUri,
                "authority" => Kind::Authority,
                "scheme" => Kind::Scheme,
                "request-target" => Kind::RequestTarget,
                "path" => Kind::Path,
                "query" => Kind::Query,
                "query-param" => match query_name {
                    Some(n) => Kind::QueryParam(n),
                    None => return Err(invalid("@query-param needs a name parameter")),
                },
                "status" if request_side => {
                    return Err(invalid("@status is not allowed on a request"));
                }
                "status" => Kind::Status,
                "signature-params" => return Err(invalid("@signature-params cannot be covered")),
                _ => return Err(invalid("unknown derived component")),
            }
        } else {
            if query_name.is_some() {
                return Err(invalid("name applies only to @query-param"));
            }
            if bs && (sf || key.is_some()) {
                return Err(invalid("bs cannot be combined with sf or key"));
            }
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid("not a valid field name"))?;
            let mode = match (bs, key, sf) {
                (true, _, _) => FieldMode::Bs,
                // `key` already re-serialises the member strictly, so `sf` adds nothing.
                (false, Some(k), _) => FieldMode::Key(k),
                (false, None, true) => match known_sf_type(name) {
                    Some(t) => FieldMode::Sf(t),
                    None => return Err(invalid("sf on a field with no known structured type")),
                },
                (false, None, false) => FieldMode::Raw,
            };
            Kind::Field(header, mode)
        };
        Ok(Component {
            item,
            identifier,
            kind,
            req,
        })
    }

    /// The component name, e.g. `@method` or `content-digest`.
    pub fn name(&self) -> &str {
        match &self.item.bare_item {
            BareItem::String(s) => s.as_str(),
            // from_item only accepts strings.
            _ => "",
        }
    }

    /// The identifier strictly serialised, parameters in received order: `"@query-param";name="a"`.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// True when the value comes from the request a response answers (`;req`).
    pub fn is_req(&self) -> bool {
        self.req
    }

    /// True when the component covers only one member of a Dictionary field (`;key`).
    pub fn is_partial(&self) -> bool {
        matches!(self.kind, Kind::Field(_, FieldMode::Key(_)))
    }

    /// Same name and same parameters, whatever their order (RFC 9421 §2.5 step 1).
    pub(crate) fn same_as(&self, other: &Component) -> bool {
        self.item.bare_item == other.item.bare_item
            && self.item.params.len() == other.item.params.len()
            && self
                .item
                .params
                .iter()
                .all(|(k, v)| other.item.params.get(k) == Some(v))
    }

    /// Appends `identifier: value\n` to the signature base.
    pub(crate) fn write_line(&self, msg: &Message<'_>, out: &mut String) -> Result<(), SigError> {
        out.push_str(&self.identifier);
        out.push_str(": ");
        let start = out.len();
        match (msg, self.req) {
            (Message::Request(view), false) => self.write_value(view, out)?,
            (Message::Response(resp), true) => match &resp.request {
                Some(view) => self.write_value(view, out)?,
                None => return Err(self.unavailable("the related request is not known")),
            },
            (Message::Response(resp), false) => match &self.kind {
                Kind::Status => {
                    if !(100..=999).contains(&resp.status) {
                        return Err(self.unavailable("status is not three digits"));
                    }
                    out.push_str(&resp.status.to_string());
                }
                Kind::Field(header, mode) => {
                    self.write_field(resp.headers, header, mode, out)?;
                }
                // from_item refuses request components without req on a response.
                _ => return Err(self.unavailable("not a response component")),
            },
            // from_item refuses req on a request signature.
            (Message::Request(_), true) => {
                return Err(self.unavailable("req is not allowed on a request signature"));
            }
        }
        // Values may not break the line structure nor carry non-ASCII (RFC 9421 §2.1, §2.2, §2.5).
        if !out[start..]
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(self.unavailable("value is not printable ascii"));
        }
        out.push('\n');
        Ok(())
    }

    fn unavailable(&self, reason: &'static str) -> SigError {
        SigError::ComponentUnavailable {
            component: self.identifier.clone(),
            reason,
        }
    }

    fn write_value(&self, view: &RequestView<'_>, out: &mut String) -> Result<(), SigError> {
        match &self.kind {
            Kind::Method => out.push_str(view.method),
            Kind::TargetUri => {
                out.push_str(&view.normalized_scheme());
                out.push_str("://");
                out.push_str(&view.normalized_authority());
                push_origin_form(view, out);
            }
            Kind::Authority => out.push_str(&view.normalized_authority()),
            Kind::Scheme => out.push_str(&view.normalized_scheme()),
            Kind::RequestTarget => match view.request_target {
                Some(target) => out.push_str(target),
                None => push_origin_form(view, out),
            },
            Kind::Path => out.push_str(view.path_or_root()),
            Kind::Query => {
                out.push('?');
                out.push_str(view.query.unwrap_or(""));
            }
            Kind::QueryParam(name) => out.push_str(&self.query_param(view, name)?),
            Kind::Status => return Err(self.unavailable("@status is not allowed on a request")),
            Kind::Field(header, mode) => self.write_field(view.headers, header, mode, out)?,
        }
        Ok(())
    }

    /// `@query-param` (RFC 9421 §2.2.8): form-urldecode the query, re-encode names and values,
    /// and take the one value whose encoded name equals `name`.
    fn query_param(&self, view: &RequestView<'_>, name: &str) -> Result<String, SigError> {
        let query = view.query.unwrap_or("");
        let mut found = None;
        for (n, v) in form_urlencoded::parse(query.as_bytes()) {
            if utf8_percent_encode(&n, FORM_URLENCODED).to_string() == name {
                if found.is_some() {
                    return Err(self.unavailable("query parameter occurs more than once"));
                }
                found = Some(utf8_percent_encode(&v, FORM_URLENCODED).to_string());
            }
        }
        found.ok_or_else(|| self.unavailable("query parameter is missing"))
    }

    fn write_field(
        &self,
        headers: &http::HeaderMap,
        header: &HeaderName,
        mode: &FieldMode,
        out: &mut String,
    ) -> Result<(), SigError> {
        let lines = headers.get_all(header);
        if lines.iter().next().is_none() {
            return Err(self.unavailable("field is missing"));
        }
        // All field lines, each canonicalised, joined with ", " (RFC 9421 §2.1).
        let combined = || {
            let mut combined = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                if i > 0 {
                    combined.extend_from_slice(b", ");
                }
                combined.extend_from_slice(&canonical_line(line.as_bytes()));
            }
            combined
        };
        let not_sf = || self.unavailable("field is not a valid structured field");
        match mode {
            FieldMode::Raw => {
                let text = String::from_utf8(combined())
                    .map_err(|_| self.unavailable("value is not printable ascii"))?;
                out.push_str(&text);
            }
            FieldMode::Sf(SfType::Item) => {
                let item: Item = Parser::new(&combined()).parse().map_err(|_| not_sf())?;
                out.push_str(&item.serialize());
            }
            FieldMode::Sf(SfType::List) => {
                let list: List = Parser::new(&combined()).parse().map_err(|_| not_sf())?;
                out.push_str(&list.serialize().unwrap_or_default());
            }
            FieldMode::Sf(SfType::Dictionary) => {
                let dict: Dictionary = Parser::new(&combined()).parse().map_err(|_| not_sf())?;
                out.push_str(&dict.serialize().unwrap_or_default());
            }
            FieldMode::Key(key) => {
                let dict: Dictionary = Parser::new(&combined()).parse().map_err(|_| not_sf())?;
                let member = KeyRef::from_str(key)
                    .ok()
                    .and_then(|k| dict.get(k))
                    .ok_or_else(|| self.unavailable("dictionary member is missing"))?;
                out.push_str(&serialize_member(member));
            }
            FieldMode::Bs => {
                // Each line on its own, so line boundaries stay signed (§2.1.3).
                let mut ser = ListSerializer::new();
                for line in lines.iter() {
                    let _ = ser.bare_item(canonical_line(line.as_bytes()).as_slice());
                }
                out.push_str(&ser.finish().unwrap_or_default());
            }
        }
        Ok(())
    }
}

/// The origin-form request-target: the path (or `/`) and `?query` when there is one.
fn push_origin_form(view: &RequestView<'_>, out: &mut String) {
    out.push_str(view.path_or_root());
    if let Some(q) = view.query {
        out.push('?');
        out.push_str(q);
    }
}

/// One field line canonicalised (RFC 9421 §2.1): obs-fold replaced by one SP, leading and
/// trailing OWS removed. Internal whitespace is kept.
pub(crate) fn canonical_line(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if b == b'\r' || b == b'\n' {
            // obs-fold = [CR] LF 1*( SP / HTAB ): the whole fold becomes one SP.
            let mut j = i + 1;
            if b == b'\r' && value.get(j) == Some(&b'\n') {
                j += 1;
            }
            while matches!(value.get(j), Some(b' ' | b'\t')) {
                j += 1;
            }
            while matches!(out.last(), Some(b' ' | b'\t')) {
                out.pop();
            }
            out.push(b' ');
            i = j;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let start = out
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |p| p + 1);
    out.truncate(end);
    out.drain(..start);
    out
}

/// A Dictionary member value with its parameters, strictly serialised (`?1` for a bare key).
fn serialize_member(member: &ListEntry) -> String {
    // A one-member List serialises exactly as that member.
    let mut ser = ListSerializer::new();
    ser.members(std::iter::once(member));
    ser.finish().unwrap_or_default()
}
