//! Custom request/response headers, parsed and checked at compile time so a request
//! only clones ready-made `HeaderName`/`HeaderValue`s.

use std::collections::HashMap;

use http::{HeaderMap, HeaderName, HeaderValue};
// Headers the proxy owns; the control plane refuses the same list.
use portcullis_proto::custom_headers::RESERVED;

use super::field::Reason;

/// Headers inserted on every message, overwriting any value already present.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderList(Box<[(HeaderName, HeaderValue)]>);

// === impl HeaderList ===

impl HeaderList {
    /// Validates a name → value map from the snapshot.
    pub(crate) fn parse(map: &HashMap<String, String>) -> Result<Self, Reason> {
        let mut out = Vec::with_capacity(map.len());
        for (name, value) in map {
            let parsed = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| Reason::HeaderName(name.clone()))?;
            if RESERVED.contains(&parsed.as_str()) {
                return Err(Reason::ReservedHeader(name.clone()));
            }
            let value =
                HeaderValue::from_str(value).map_err(|_| Reason::HeaderValue(name.clone()))?;
            out.push((parsed, value));
        }
        // Deterministic order; maps from the wire have none.
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok(Self(out.into_boxed_slice()))
    }

    /// Whether the list sets no header (the HTTP/1.1 fast path takes only such proxies).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Overwrites each header in `headers`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in self.0.iter() {
            headers.insert(name.clone(), value.clone());
        }
    }
}
