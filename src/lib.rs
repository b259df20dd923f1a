//! itwin-proxy: a caching reverse proxy for the iTwin Platform REST API.
//!
//! A request flows through [`server`] (listeners, graceful shutdown) into [`pipeline`], whose
//! phases use [`auth`] (whose page is it), [`cache`] (the key, storage, collapsing),
//! [`ratelimit`] (outbound budgets), [`upstream`] (the one upstream client) and [`rewrite`]
//! (links back through the proxy). [`app::start`] builds all of it from [`config::Settings`].

pub mod app;
mod ascii;
pub mod auth;
pub(crate) mod body;
pub mod cache;
pub mod cluster;
pub mod config;
pub(crate) mod error;
pub(crate) mod headers;
pub(crate) mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod recent;
pub(crate) mod request_body;
pub mod rewrite;
pub mod server;
pub mod telemetry;
pub(crate) mod upstream;
