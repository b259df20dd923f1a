//! The page cache of the connections list: the key function, storage, collapsing of
//! concurrent misses, invalidation after writes, and the vocabulary of what happened.

mod backoff;
mod encoding;
mod flight;
mod invalidate;
mod key;
mod page_headers;
mod status;
mod store;

pub(crate) use backoff::RefreshBackoff;
pub use encoding::Gzipped;
pub(crate) use encoding::private_and_varying;
pub(crate) use flight::{Flights, Role};
pub(crate) use invalidate::{Invalidator, Write, WriteOutcome};
pub use key::{CacheKey, PageQuery};
pub(crate) use page_headers::PageHeaders;
pub(crate) use status::{CACHE_STATUS, CacheStatus, age_value};
pub use store::{CachedPage, HeldPage, Lookup, PageCache, Purge};
