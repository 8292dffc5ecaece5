//! A member's connection after the handshake: every byte written goes out in
//! MAC'd frames, and reads yield only the payload of frames whose MAC is right
//! (the frames themselves are `cluster::seal`'s). One type for both kinds of
//! socket: glommio's (`AsyncRead`/`AsyncWrite`) and blocking ones (`Read`/
//! `Write`). A bad frame fails the read with `InvalidData`, and the caller
//! closes the connection. Does I/O.
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::cluster::seal::{Opened, Sealing, FRAME_LEN_BYTES, FRAME_MAX_BYTES};
use futures_lite::{ready, AsyncRead, AsyncWrite};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes read from the socket at a time, before a frame needs more.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A stream `S` whose traffic is sealed.
pub struct Sealed<S> {
    inner: S,
    sealing: Sealing,
    /// Bytes read from the socket: `read[from..to]` not yet opened.
    read: Vec<u8>,
    read_from: usize,
    read_to: usize,
    /// The payload of the last frame opened, not yet handed out: `read[plain_from..plain_to]`.
    plain_from: usize,
    plain_to: usize,
    /// A frame sealed and not yet taken whole by the socket: `write[written..]`,
    /// covering `accepted` bytes of the caller's.
    write: Vec<u8>,
    written: usize,
    accepted: usize,
}

impl<S> Sealed<S> {
    /// Seals `inner`, a connection whose handshake gave these keys (and on
    /// which nothing has been read past the handshake's last line).
    pub fn new(inner: S, sealing: Sealing) -> Sealed<S> {
        Sealed {
            inner,
            sealing,
            read: vec![0; READ_CHUNK_BYTES],
            read_from: 0,
            read_to: 0,
            plain_from: 0,
            plain_to: 0,
            write: Vec::new(),
            written: 0,
            accepted: 0,
        }
    }

    /// The connection underneath.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Hands out payload already opened, or opens the next whole frame:
    /// `None` when the socket must be read first.
    fn take_plain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            if self.plain_from < self.plain_to {
                let n = buf.len().min(self.plain_to - self.plain_from);
                buf[..n].copy_from_slice(&self.read[self.plain_from..self.plain_from + n]);
                self.plain_from += n;
                return Ok(Some(n));
            }
            let unopened = &self.read[self.read_from..self.read_to];
            match self.sealing.receive.open(unopened) {
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
                Ok(Opened::Incomplete) => return Ok(None),
                Ok(Opened::Frame { len, used }) => {
                    self.plain_from = self.read_from + FRAME_LEN_BYTES;
                    self.plain_to = self.plain_from + len;
                    self.read_from += used;
                    if len == 0 {
                        continue;
                    }
                }
            }
        }
    }

    /// Makes room at the end of the read buffer (`read[read_to..]`) for more
    /// of the frame begun at `read_from` (whose payload has all been handed out).
    fn make_read_room(&mut self) {
        if self.read_from == self.read_to {
            self.read_from = 0;
            self.read_to = 0;
        } else if self.read_to == self.read.len() {
            if self.read_from > 0 {
                self.read.copy_within(self.read_from..self.read_to, 0);
                self.read_to -= self.read_from;
                self.read_from = 0;
            } else {
                // `open` bounds a frame at FRAME_MAX_BYTES, so this stops there.
                let grown = (self.read.len() * 2).min(FRAME_MAX_BYTES);
                self.read.resize(grown, 0);
            }
        }
    }

    /// A socket read of `n` bytes: 0 is the end of the stream, which cuts a
    /// frame if one was begun.
    fn received(&mut self, n: usize) -> io::Result<()> {
        if n == 0 && self.read_from < self.read_to {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.read_to += n;
        Ok(())
    }

    /// Seals up to a frame of `buf`, unless a frame is still being written.
    fn seal_next(&mut self, buf: &[u8]) {
        if self.written == self.write.len() {
            self.write.clear();
            self.written = 0;
            let take = buf.len().min(crate::cluster::seal::FRAME_PAYLOAD_MAX_BYTES);
            self.sealing.send.seal(&buf[..take], &mut self.write);
            self.accepted = take;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sealed<S> {
    /// Writes what is left of the sealed frame; ready once the socket took it all.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Sealed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(n) = this.take_plain(buf)? {
                return Poll::Ready(Ok(n));
            }
            this.make_read_room();
            let room = &mut this.read[this.read_to..];
            let n = ready!(Pin::new(&mut this.inner).poll_read(cx, room))?;
            this.received(n)?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Sealed<S> {
    /// Ready once the frame holding the first bytes of `buf` is written whole;
    /// if the socket makes it wait, the caller offers the same bytes again, as
    /// `write_all` does.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        this.seal_next(buf);
        ready!(this.poll_send(cx))?;
        Poll::Ready(Ok(this.accepted))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A frame cut short would fail at the other end anyway.
        let _ = ready!(this.poll_send(cx));
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

impl<S: Read + Write> Read for Sealed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plain(buf)? {
                return Ok(n);
            }
            self.make_read_room();
            let n = self.inner.read(&mut self.read[self.read_to..])?;
            self.received(n)?;
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

impl<S: Read + Write> Write for Sealed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.seal_next(buf);
        while self.written < self.write.len() {
            match self.inner.write(&self.write[self.written..])? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.written += n,
            }
        }
        Ok(self.accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::{Secret, NONCE_BYTES, SECRET_BYTES_MIN};
    use crate::cluster::seal::{End, FRAME_PAYLOAD_MAX_BYTES};
    use std::net::{TcpListener, TcpStream};

    fn sealing(end: End) -> Sealing {
        let secret = Secret::from_bytes(&[9; SECRET_BYTES_MIN]);
        Sealing::new(&secret, &[1; NONCE_BYTES], &[2; NONCE_BYTES], end)
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (client, listener.accept().unwrap().0)
    }

    #[test]
    fn bytes_cross_sealed_sockets_whole_in_both_directions_whatever_the_read_size() {
        let (client, server) = pair();
        let mut client = Sealed::new(client, sealing(End::Client));
        let mut server = Sealed::new(server, sealing(End::Server));
        let big: Vec<u8> = (0..FRAME_PAYLOAD_MAX_BYTES * 3 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        let sent = big.clone();
        let writer = std::thread::spawn(move || {
            client.write_all(&sent).unwrap();
            client.write_all(b"mn\r\n").unwrap();
            let mut back = [0u8; 4];
            client.read_exact(&mut back).unwrap();
            back
        });
        let mut got = vec![0u8; big.len() + 4];
        let mut at = 0;
        // Reads of odd sizes cut payloads across reads.
        while at < got.len() {
            let end = (at + 1000).min(got.len());
            at += server.read(&mut got[at..end]).unwrap();
        }
        assert_eq!(&got[..big.len()], &big[..]);
        assert_eq!(&got[big.len()..], b"mn\r\n");
        server.write_all(b"MN\r\n").unwrap();
        assert_eq!(&writer.join().unwrap(), b"MN\r\n");
    }

    #[test]
    fn plain_bytes_on_a_sealed_connection_fail_the_read() {
        let (mut client, server) = pair();
        let mut server = Sealed::new(server, sealing(End::Server));
        client
            .write_all(b"rc rep 1\r\nms k 1 T0\r\nx\r\nmn\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        let error = server.read(&mut buf).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
