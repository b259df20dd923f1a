//! Listeners and their lifecycle: the proxy listener, the admin listener, in-flight
//! accounting and graceful shutdown.

mod admin;
mod admin_auth;
mod inflight;
mod listener;
mod slow_reader;

pub use admin::handle as handle_admin;
pub use inflight::{InFlight, InFlightGuard, Tracked};
pub use listener::{
    DEFAULT_CLIENT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, Drained, Limits, serve,
};
