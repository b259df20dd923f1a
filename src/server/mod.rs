//! Listeners and their lifecycle: the proxy listener, the admin listener, in-flight
//! accounting and graceful shutdown.

mod admin;
mod admin_auth;
mod head_timer;
mod inflight;
mod listener;
mod slow_reader;
mod status;

pub(crate) use admin::handle as handle_admin;
pub(crate) use inflight::InFlight;
pub use listener::Drained;
pub(crate) use listener::{Limits, serve};
