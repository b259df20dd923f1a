//! Who is asking: bearer tokens, the subject a cached page belongs to, and which tokens are
//! known to be valid.

mod hash;
mod known;
mod token;

pub use hash::{RandomUnavailable, TokenHash, TokenHasher};
pub use known::{KnownTokens, MAX_REMEMBER};
pub use token::{Subject, Token, bearer_token};
