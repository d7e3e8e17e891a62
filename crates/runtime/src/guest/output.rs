//! A guest's stdout and stderr, captured into log lines.

use std::sync::{Arc, Mutex, PoisonError};

use presence_router_model::Limits;

/// What one `write` to stdout or stderr may carry (the permit
/// `check-write` grants; `state::write` refuses more before copying it).
pub(crate) const WRITE_PERMIT: usize = 64 * 1024;

/// A guest's stdout or stderr: kept in memory, cut into lines after each
/// call. Writes never fail (a Rust guest panics when `println!` fails, so
/// refusing a write would turn chatter into a trap); beyond the cap, lines
/// are counted and dropped.
#[derive(Clone)]
pub(crate) struct CapturedOutput(Arc<Mutex<OutputBuffer>>);

struct OutputBuffer {
    bytes: Vec<u8>,
    max_bytes: usize,
    /// Set once the buffer is full: everything after is dropped and counted
    /// until the end of the call.
    dropping: bool,
    /// Whole lines dropped.
    dropped_lines: usize,
    /// Whether the last dropped bytes end inside a line (a guest may write
    /// a line in several pieces: `eprintln!` does).
    dropped_partial: bool,
    /// The last bytes written, kept whatever the caps: a panic message comes
    /// last, after whatever filled the log.
    tail: Vec<u8>,
}

/// What the capture of one stream yields after a call.
#[derive(Default)]
pub(crate) struct CapturedLines {
    pub lines: Vec<String>,
    pub dropped: usize,
    /// The last three non-empty lines written, dropped or not.
    pub last_lines: Vec<String>,
}

impl CapturedOutput {
    pub(crate) fn new(max_lines: usize) -> Self {
        CapturedOutput(Arc::new(Mutex::new(OutputBuffer {
            bytes: Vec::new(),
            max_bytes: max_lines.saturating_mul(Limits::MAX_LOG_LINE_BYTES),
            dropping: false,
            dropped_lines: 0,
            dropped_partial: false,
            tail: Vec::new(),
        })))
    }

    /// Bytes of output kept for the last lines, beyond any cap.
    const TAIL_BYTES: usize = 2 * Limits::MAX_LOG_LINE_BYTES;

    fn write(&self, bytes: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let recent = &bytes[bytes.len().saturating_sub(Self::TAIL_BYTES)..];
        buffer.tail.extend_from_slice(recent);
        let excess = buffer.tail.len().saturating_sub(Self::TAIL_BYTES);
        buffer.tail.drain(..excess);
        if !buffer.dropping && buffer.bytes.len() + bytes.len() <= buffer.max_bytes {
            buffer.bytes.extend_from_slice(bytes);
            return;
        }
        if !buffer.dropping {
            // Full: keep whole lines only; the line that did not fit and all
            // that follows are dropped. Only what fits is copied.
            buffer.dropping = true;
            let room = buffer.max_bytes.saturating_sub(buffer.bytes.len());
            let window = &bytes[..room.min(bytes.len())];
            match window.iter().rposition(|&b| b == b'\n') {
                Some(end) => {
                    buffer.bytes.extend_from_slice(&window[..=end]);
                    buffer.drop_bytes(&bytes[end + 1..]);
                }
                None => {
                    let whole = buffer
                        .bytes
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1);
                    let unfinished = buffer.bytes.split_off(whole);
                    buffer.drop_bytes(&unfinished);
                    buffer.drop_bytes(bytes);
                }
            }
        } else {
            buffer.drop_bytes(bytes);
        }
    }

    /// The lines written since the last call, how many were dropped, and
    /// the last ones written.
    pub(crate) fn take_lines(&self) -> CapturedLines {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // The usual call writes nothing: skip the decoding and allocations.
        if buffer.tail.is_empty() && buffer.dropped_lines == 0 && !buffer.dropped_partial {
            buffer.dropping = false;
            return CapturedLines::default();
        }
        let bytes = std::mem::take(&mut buffer.bytes);
        let tail = std::mem::take(&mut buffer.tail);
        let dropped = std::mem::take(&mut buffer.dropped_lines)
            + usize::from(std::mem::take(&mut buffer.dropped_partial));
        buffer.dropping = false;
        let lines = non_empty_lines(&String::from_utf8_lossy(&bytes))
            .map(str::to_owned)
            .collect();
        let tail = String::from_utf8_lossy(&tail);
        let mut last_lines: Vec<String> = non_empty_lines(&tail)
            .rev()
            .take(3)
            .map(str::to_owned)
            .collect();
        last_lines.reverse();
        CapturedLines {
            lines,
            dropped,
            last_lines,
        }
    }
}

/// The non-blank lines of captured output.
fn non_empty_lines(text: &str) -> impl DoubleEndedIterator<Item = &str> {
    text.lines().filter(|line| !line.trim().is_empty())
}

impl OutputBuffer {
    fn drop_bytes(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.dropped_lines += bytes.iter().filter(|&&b| b == b'\n').count();
            self.dropped_partial = last != b'\n';
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::p2::OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        CapturedOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        CapturedOutput::write(&self, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
