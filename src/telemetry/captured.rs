//! For tests: the lines the subscriber `init` installs writes, caught in memory, with a
//! stopped clock so that two lines can be compared byte for byte.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use super::subscriber;
use crate::config::LogFormat;

/// The time every caught line shows.
const AT_TEXT: &str = "2024-02-29T12:34:56.123456Z";

/// A clock stopped at [`AT_TEXT`].
struct Stopped;

impl FormatTime for Stopped {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str(AT_TEXT)
    }
}

/// Lines written by a subscriber, kept in memory.
#[derive(Clone, Default)]
struct Caught(Arc<Mutex<Vec<u8>>>);

impl io::Write for Caught {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut caught = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        caught.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A dispatcher that sees nothing, for a test to hold while its own subscriber is the
/// thread's default. While only one dispatcher is registered, tracing takes it for the global
/// one: a callsite another test thread (with no subscriber) meets first then caches that
/// thread's verdict, "never", and the test's subscriber misses it. With two registered, every
/// callsite asks the thread's own.
pub(crate) fn second_dispatcher() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
}

/// What the subscriber `init` installs, with `filter` and in `format`, writes while `run`
/// runs.
pub(crate) fn lines_written(filter: &str, format: LogFormat, run: impl FnOnce()) -> String {
    let _second = second_dispatcher();
    let caught = Caught::default();
    let writer = {
        let caught = caught.clone();
        move || caught.clone()
    };
    let subscriber = subscriber(EnvFilter::new(filter), format, false, writer, Stopped);
    tracing::subscriber::with_default(subscriber, run);
    let bytes = caught
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    String::from_utf8_lossy(&bytes).into_owned()
}
