//! Who is asking: bearer tokens, the subject a cached page belongs to, which tokens are
//! known to be valid, and local verification against the issuer's signing keys.

mod hash;
mod jwks;
mod known;
mod reader;
mod token;

pub use hash::{RandomUnavailable, TokenHash, TokenHasher};
pub use jwks::{Verdict, Verifier, VerifierSetupError};
pub use known::{KnownTokens, MAX_REMEMBER, lifetime};
pub use reader::TokenReader;
pub use token::{Subject, Token, bearer_token, epoch_now};
