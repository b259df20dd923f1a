//! The page cache of the connections list: the key function, storage, collapsing of
//! concurrent misses, invalidation after writes, and the vocabulary of what happened.

mod backoff;
mod encoding;
mod flight;
mod invalidate;
mod key;
mod status;
mod store;

pub use backoff::RefreshBackoff;
pub use encoding::{Gzipped, accepts_gzip, vary_on_encoding};
pub use flight::{Abandoned, Flights, Role};
pub use invalidate::{Invalidator, Write, WriteOutcome};
pub use key::{CacheKey, PageQuery};
pub use status::CacheStatus;
pub use store::{CachedPage, HeldPage, Lookup, PageCache, Purge};
