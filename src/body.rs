//! The one body type every response of the proxy carries, and small constructors for it.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};

/// Any error a body can end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, streaming body: upstream bodies pass through it unbuffered, synthetic ones are
/// built from bytes.
pub(crate) type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body holding exactly these bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with nothing in it.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}
