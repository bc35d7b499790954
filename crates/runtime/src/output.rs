//! Bounded capture of a guest's stdout and stderr.
//!
//! A guest may write without end; the host keeps only the last `capacity`
//! bytes of each stream (the end is where a panic message is) and counts
//! the rest. Writes never fail, so a chatty guest is not broken by the cap.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The tail of one output stream.
#[derive(Clone)]
pub(crate) struct OutputCapture {
    inner: Arc<Mutex<Tail>>,
}

struct Tail {
    capacity: usize,
    buf: VecDeque<u8>,
    total: u64,
}

impl OutputCapture {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Tail {
                capacity,
                buf: VecDeque::new(),
                total: 0,
            })),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut tail = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        tail.total += bytes.len() as u64;
        let cap = tail.capacity;
        let keep = &bytes[bytes.len().saturating_sub(cap)..];
        let overflow = (tail.buf.len() + keep.len()).saturating_sub(cap);
        let drop = overflow.min(tail.buf.len());
        tail.buf.drain(..drop);
        tail.buf.extend(keep);
    }

    /// The kept bytes and the total written.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut tail = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // A long-lived instance's capture is taken once per call: each
        // call counts its own bytes.
        let total = std::mem::take(&mut tail.total);
        (std::mem::take(&mut tail.buf).into(), total)
    }

    /// The last `n` bytes, as text.
    pub(crate) fn last_text(&self, n: usize) -> String {
        let tail = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let skip = tail.buf.len().saturating_sub(n);
        let bytes: Vec<u8> = tail.buf.iter().skip(skip).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(1 << 20)
    }
}

#[async_trait::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail() {
        let c = OutputCapture::new(8);
        c.push(b"hello ");
        c.push(b"world, the end");
        assert_eq!(c.last_text(3), "end");
        let (kept, total) = c.take();
        assert_eq!(kept, b" the end");
        assert_eq!(total, 20);
        c.push(b"0123456789abc");
        assert_eq!(c.take().0, b"56789abc");
    }
}
