//! Log output off the request path: lines are appended to a buffer in memory and written out
//! by a thread of their own, in batches, as a web server's buffered access log is. A request
//! never waits on a write to stderr; lines reach it within [`FLUSH_EVERY`], at once past
//! [`BATCH_BYTES`], and all of them when the [`Flusher`] is dropped.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// A batch this large is written at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Past this much unwritten output (the destination does not keep up), a line is written
/// by the thread that logs it, as it would be without batching.
const MAX_PENDING: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    closed: bool,
}

impl Pending {
    /// Appends `bytes`; whether the writer is to be woken: when they make the batch full,
    /// and only then. Once woken, the writer takes the whole batch; if it was not waiting, it
    /// finds the batch full before it waits again. A notification per line past the mark
    /// would cost a system call each until the writer runs, on a machine busy enough to
    /// delay it.
    fn append(&mut self, bytes: &[u8]) -> bool {
        let before = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        before < BATCH_BYTES && self.bytes.len() >= BATCH_BYTES
    }
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where log lines go: hands out writers that append to the batch.
#[derive(Clone)]
pub struct Batched(Arc<Shared>);

/// Writes the batches; dropping it writes what is left and stops the thread.
pub struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the thread that writes batches to `destination`.
pub fn start<W: Write + Send + 'static>(destination: W) -> io::Result<(Batched, Flusher)> {
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        wake: Condvar::new(),
    });
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn({
            let shared = Arc::clone(&shared);
            move || write_batches(&shared, destination)
        })?;
    let flusher = Flusher {
        shared: Arc::clone(&shared),
        thread: Some(thread),
    };
    Ok((Batched(shared), flusher))
}

fn write_batches<W: Write>(shared: &Shared, mut destination: W) {
    let mut batch = Vec::new();
    loop {
        let closed = {
            let mut pending = shared.lock();
            if pending.bytes.len() < BATCH_BYTES && !pending.closed {
                pending = shared
                    .wake
                    .wait_timeout(pending, FLUSH_EVERY)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut batch, &mut pending.bytes);
            pending.closed
        };
        if !batch.is_empty() {
            // Nowhere to report a failed log write; the next batch tries again.
            let _ = destination
                .write_all(&batch)
                .and_then(|()| destination.flush());
            batch.clear();
        }
        if closed && shared.lock().bytes.is_empty() {
            return;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Appends one formatted event to the batch.
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut pending = self.0.lock();
        if pending.closed || pending.bytes.len() >= MAX_PENDING {
            drop(pending);
            return io::stderr().write(buf);
        }
        if pending.append(buf) {
            self.0.wake.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A destination the test can read while the writer thread owns it.
    #[derive(Clone, Default)]
    struct Shown(Arc<Mutex<Vec<u8>>>);

    impl Write for Shown {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_writer_is_woken_once_per_full_batch() {
        let mut pending = Pending::default();
        let line = [b'x'; 1000];
        let wakes: usize = (0..200).map(|_| usize::from(pending.append(&line))).sum();
        assert_eq!(wakes, 1, "the batch filled once");
        assert_eq!(pending.bytes.len(), 200_000);
        pending.bytes.clear();
        assert!(!pending.append(&line));
        assert!(pending.append(&[b'x'; BATCH_BYTES]), "one line may fill it");
    }

    #[test]
    fn lines_arrive_in_order_and_all_on_drop() {
        let shown = Shown::default();
        let (batched, flusher) = start(shown.clone()).unwrap();
        let mut expected = Vec::new();
        for n in 0..10_000 {
            let line = format!("line {n}\n");
            batched.make_writer().write_all(line.as_bytes()).unwrap();
            expected.extend_from_slice(line.as_bytes());
        }
        drop(flusher);
        assert_eq!(*shown.0.lock().unwrap(), expected);
    }

    #[test]
    fn a_quiet_line_is_written_without_waiting_for_more() {
        let shown = Shown::default();
        let (batched, _flusher) = start(shown.clone()).unwrap();
        batched.make_writer().write_all(b"alone\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shown.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*shown.0.lock().unwrap(), b"alone\n");
    }
}
