//! itwin-proxy: a caching reverse proxy for the iTwin Platform REST API.
//!
//! A request flows through [`server`] (listeners, graceful shutdown) into [`pipeline`], whose
//! phases use [`auth`] (whose page is it), [`cache`] (the key, storage, collapsing),
//! [`ratelimit`] (outbound budgets), [`upstream`] (the one upstream client) and [`rewrite`]
//! (links back through the proxy). [`app::start`] builds all of it from [`config::Settings`].

pub mod app;
mod ascii;
pub mod auth;
pub mod body;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod error;
pub mod headers;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod request_body;
pub mod rewrite;
pub mod server;
pub mod telemetry;
pub mod upstream;
