//! The names of every Redis key and channel the proxy uses, all under `cluster.key_prefix`.
//!
//! Keys that one script touches together share a hash tag (`{..}`), so a Redis Cluster would
//! keep them in one slot: a budget's state is one hash tagged with its app; a page, its fill
//! lock and its iModel's generation are tagged with a hash of the iModel id. Client-chosen
//! text (iModel ids) never appears raw in a key: it is hashed, so no character of it can break
//! a hash tag.

use aws_lc_rs::digest;

/// Key and channel names for one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// Lower-case hex of the first 16 bytes of SHA-256: short, and enough to tell ids apart.
pub(crate) fn short_hash(text: &[u8]) -> String {
    let digest = digest::digest(&digest::SHA256, text);
    hex(&digest.as_ref()[..16])
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _infallible = write!(out, "{b:02x}");
            out
        })
}

impl Keys {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The state of one budget (`app` is a budget name such as `client:<id>`): a hash.
    pub fn budget(&self, app: &str) -> String {
        format!("{}:budget:{{{}}}", self.prefix, short_hash(app.as_bytes()))
    }

    /// The key that token hashes are made with, shared by every replica.
    pub fn hash_key(&self) -> String {
        format!("{}:hash-key", self.prefix)
    }

    /// The proof that a token (by its keyed hash, hex) is known-valid.
    pub fn proof(&self, token_hash: &str) -> String {
        format!("{}:proof:{token_hash}", self.prefix)
    }

    /// The hash tag of an iModel: its pages, fill locks and generation share it.
    fn imodel_tag(imodel_id: &str) -> String {
        short_hash(imodel_id.to_ascii_lowercase().as_bytes())
    }

    /// The generation of an iModel's pages, raised by every write or purge touching it.
    pub fn imodel_generation(&self, imodel_id: &str) -> String {
        format!("{}:gen:{{{}}}", self.prefix, Self::imodel_tag(imodel_id))
    }

    /// The generation of all pages, raised by a purge of everything.
    pub fn all_generation(&self) -> String {
        format!("{}:gen-all", self.prefix)
    }

    /// One page: `page_id` is the keyed hash of the cache key and the link settings.
    pub fn page(&self, imodel_id: &str, page_id: &str) -> String {
        format!(
            "{}:page:{{{}}}:{page_id}",
            self.prefix,
            Self::imodel_tag(imodel_id)
        )
    }

    /// The fill lock of one page.
    pub fn fill_lock(&self, imodel_id: &str, page_id: &str) -> String {
        format!(
            "{}:lock:{{{}}}:{page_id}",
            self.prefix,
            Self::imodel_tag(imodel_id)
        )
    }

    /// Counts every write and purge, so a replica that lost its subscription can tell whether
    /// it missed any.
    pub fn changes(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// The pub/sub channel of invalidations and forgotten tokens.
    pub fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_tags_where_scripts_need_them() {
        let keys = Keys::new("p");
        let tag = |key: &str| {
            let open = key.find('{').unwrap_or(0);
            let close = key.find('}').unwrap_or(0);
            key[open..=close].to_owned()
        };
        let page = keys.page("IM-1", "abc");
        assert_eq!(tag(&page), tag(&keys.fill_lock("im-1", "abc")));
        assert_eq!(tag(&page), tag(&keys.imodel_generation("Im-1")));
        assert_ne!(tag(&page), tag(&keys.page("im-2", "abc")));
        assert!(keys.budget("client:}{").starts_with("p:budget:{"));
        assert_eq!(tag(&keys.budget("client:}{")).len(), 34);
        assert!(keys.channel().starts_with("p:"));
    }
}
