//! The page cache of the connections list: the key function, storage, collapsing of
//! concurrent misses, and the vocabulary of what happened.

mod flight;
mod key;
mod status;
mod store;

pub use flight::{Abandoned, Flights, Role};
pub use key::{CacheKey, PageQuery};
pub use status::CacheStatus;
pub use store::{CachedPage, FreshPage, PageCache, Purge};
