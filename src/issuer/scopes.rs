//! Which scopes a token may use, and which a client may ask for.

/// The scopes a token may use while its client holds `client`: each of the token's own that a
/// client scope grants, and each of the client's that a token scope grants (a token holding
/// `table://**` keeps `table://a.*` when that is all its client still holds). Both kinds are
/// granted by both lists, so the result never exceeds either; a partial overlap that neither
/// side spells out (`table://a.*` against `table://*.b`) is dropped, which fails closed.
pub fn effective_scopes(token: &[String], client: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(token.len());
    for t in token {
        if crate::scope::granted(t, client) && !out.contains(t) {
            out.push(t.clone());
        }
    }
    for c in client {
        if crate::scope::granted(c, token) && !crate::scope::granted(c, &out) {
            out.push(c.clone());
        }
    }
    out
}

/// Checks requested scopes (space-separated) against what the client holds, with the wildcard
/// rules of [`crate::scope`] (holding `table://*.**` grants `table://a.b`). `None` asks for
/// everything the client holds; `Err` names the first scope it may not have.
pub fn narrow_scopes(requested: Option<&str>, held: &[String]) -> Result<Vec<String>, String> {
    match requested {
        None => Ok(held.to_vec()),
        Some(req) => {
            let mut out: Vec<String> = Vec::new();
            for s in req.split(' ').filter(|s| !s.is_empty()) {
                if !crate::scope::granted(s, held) {
                    return Err(s.to_string());
                }
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
            Ok(out)
        }
    }
}
