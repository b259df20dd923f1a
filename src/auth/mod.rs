//! Who is asking: bearer tokens, the subject a cached page belongs to, which tokens are
//! known to be valid, and local verification against the issuer's signing keys.

mod hash;
mod jwks;
mod known;
mod reader;
mod token;

pub use hash::{RandomUnavailable, TokenHash, TokenHasher};
pub use jwks::VerifierSetupError;
pub(crate) use jwks::{Verdict, Verifier};
pub(crate) use known::{Generation, KnownTokens, lifetime};
pub(crate) use reader::TokenReader;
pub(crate) use token::bearer_unchecked;
pub(crate) use token::epoch_now;
pub use token::{Subject, Token, bearer_token};
