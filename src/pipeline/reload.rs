//! Live reload: new settings swapped in atomically while requests keep flowing. Requests in
//! flight finish on the settings they started with.

use std::sync::Arc;

use super::{Proxy, SettingsState, SettingsStateError};
use crate::cache::Purge;
use crate::config::Settings;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reloaded {
    /// Keys whose values differ from those the process started with but only take effect
    /// after a restart: reported at every reload until the restart.
    pub needs_restart: Vec<&'static str>,
    /// Whether the cache was emptied because link settings changed (stored pages carry
    /// rewritten links).
    pub cache_emptied: bool,
    /// Upstream origins whose links were rewritten before and no longer are (a changed
    /// `upstream.base_url` not kept in `upstream.link_origins`): links to them that clients
    /// still hold, or that the new upstream sends, would lead past the proxy.
    pub unrewritten_origins: Vec<String>,
}

impl Proxy {
    /// Applies `settings` to every request that starts from now on.
    pub fn reload(&self, settings: Settings) -> Result<Reloaded, SettingsStateError> {
        let old = self.live.load_full();
        let mut next = SettingsState::new(settings, &self.metrics)?;
        let (before, after) = (&old.settings, &next.settings);

        let needs_restart = after.needs_restart(&self.started);

        // The budgets stay: what they spent and their pauses carry over, new rates apply.
        if before.rate_limit != after.rate_limit {
            old.budgets.reconfigure(&after.rate_limit);
        }
        next.budgets = Arc::clone(&old.budgets);
        let same_keys = before.auth.jwks_url == after.auth.jwks_url
            && before.auth.issuer == after.auth.issuer
            && before.auth.audience == after.auth.audience
            && before.upstream.ca_file == after.upstream.ca_file;
        if same_keys {
            // Keep the fetched signing keys rather than fetching them again.
            next.verifier.clone_from(&old.verifier);
        } else if let Some(verifier) = &next.verifier {
            verifier.prefetch();
        }
        let unrewritten_origins = link_origins(before)
            .into_iter()
            .filter(|origin| !link_origins(after).contains(origin))
            .collect();
        let same_judges = same_keys && before.upstream.base_url == after.upstream.base_url;
        next.proofs = match same_judges {
            // Tokens were proven against the old upstream or keys; the new ones decide
            // afresh, and proofs from calls still in flight under the old ones never count.
            false => self.known.forget_all(),
            true => old.proofs,
        };
        let cache_emptied = before.server.public_base_url != after.server.public_base_url
            || before.upstream.base_url != after.upstream.base_url
            || before.upstream.link_origins != after.upstream.link_origins;
        self.live.store(Arc::new(next));
        if cache_emptied {
            self.cache.purge(&Purge::All);
        }
        Ok(Reloaded {
            needs_restart,
            cache_emptied,
            unrewritten_origins,
        })
    }
}

/// The origins whose links the settings rewrite, as `scheme://host[:port]`.
fn link_origins(settings: &Settings) -> Vec<String> {
    std::iter::once(&settings.upstream.base_url)
        .chain(&settings.upstream.link_origins)
        .map(|url| url.origin().ascii_serialization())
        .collect()
}
