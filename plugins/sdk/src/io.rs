//! `std::io` adapters over the host's chunked streams, so plugins can use
//! `io::copy`, `BufReader`, tar/gzip encoders and the like.

use std::io;

use crate::bindings::opshost::plugin::types::{Reader, Writer};
use crate::Error;

/// Chunk size asked of the host per read.
const CHUNK: u32 = 256 << 10;

fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::NotFound(_) => io::ErrorKind::NotFound,
        Error::Denied(_) => io::ErrorKind::PermissionDenied,
        Error::TimedOut(_) => io::ErrorKind::TimedOut,
        Error::InvalidInput(_) => io::ErrorKind::InvalidInput,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, crate::describe(&e))
}

pub struct ReadStream {
    inner: Reader,
    buf: Vec<u8>,
    pos: usize,
}

impl ReadStream {
    pub fn new(inner: Reader) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl io::Read for ReadStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf = self.inner.read(CHUNK).map_err(to_io)?;
            self.pos = 0;
            if self.buf.is_empty() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Buffers writes into host-sized chunks. Call [`WriteStream::finish`]: a
/// stream dropped without it is abandoned (the file never appears).
pub struct WriteStream {
    inner: Writer,
    buf: Vec<u8>,
}

impl WriteStream {
    pub fn new(inner: Writer) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(CHUNK as usize),
        }
    }

    pub fn finish(mut self) -> crate::Result<()> {
        self.push()?;
        self.inner.finish()
    }

    fn push(&mut self) -> crate::Result<()> {
        if !self.buf.is_empty() {
            self.inner.write(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl io::Write for WriteStream {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK as usize {
            self.push().map_err(to_io)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push().map_err(to_io)
    }
}
