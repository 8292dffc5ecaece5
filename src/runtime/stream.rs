//! A client connection's stream (or a link's to another node), whatever carries
//! it: the shard's socket ring ([`super::uring`]) or glommio's sockets, with TLS
//! (`-Z`) or a member's frames ([`super::sealed`]) over either. Does I/O.
//!
//! Socket layer, beside `uring`.

use super::gate::SendGate;
use super::sealed::Sealed;
use super::tls::TlsStream;
use super::uring::{RingStream, SocketRing};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A client connection: on the shard's socket ring when it has one, else on
/// glommio's sockets.
pub enum ClientStream {
    Glommio(TcpStream),
    Ring(RingStream),
    /// `-Z`: TLS over one of the others.
    Tls(Box<TlsStream<ClientStream>>),
    /// A member's connection once past the handshake: frames with a MAC.
    Sealed(Box<Sealed<ClientStream>>),
}

impl ClientStream {
    /// The connection on `ring` if there is one, else as it is; with `tls`, a
    /// TLS session over it.
    pub fn new(
        stream: TcpStream,
        ring: Option<&Rc<SocketRing>>,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<ClientStream> {
        let socket = match ring {
            Some(ring) => ClientStream::Ring(ring.adopt(stream)?),
            None => {
                let _ = stream.set_nodelay(true);
                ClientStream::Glommio(stream)
            }
        };
        match tls {
            Some(config) => Ok(ClientStream::Tls(Box::new(TlsStream::new(
                socket,
                config.clone(),
            )?))),
            None => Ok(socket),
        }
    }
}

impl ClientStream {
    /// A plain connection on the socket ring with nothing on its way: its
    /// socket, for the shard that owns a lone request's key to send the reply
    /// on (see [`gate`](super::gate)).
    pub fn lend(&self) -> Option<Arc<SendGate>> {
        match self {
            ClientStream::Ring(s) => s.lend(),
            _ => None,
        }
    }

    /// The connection's socket, which names it in `stats conns`.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            ClientStream::Glommio(s) => s.as_raw_fd(),
            ClientStream::Ring(s) => s.raw_fd(),
            ClientStream::Tls(s) => s.socket().raw_fd(),
            ClientStream::Sealed(s) => s.get_ref().raw_fd(),
        }
    }
}

/// What both kinds of stream are.
trait Duplex: AsyncRead + AsyncWrite + Unpin {}
impl<T: AsyncRead + AsyncWrite + Unpin> Duplex for T {}

impl ClientStream {
    fn inner(self: Pin<&mut Self>) -> Pin<&mut dyn Duplex> {
        match self.get_mut() {
            ClientStream::Glommio(s) => Pin::new(s),
            ClientStream::Ring(s) => Pin::new(s),
            ClientStream::Tls(s) => Pin::new(&mut **s),
            ClientStream::Sealed(s) => Pin::new(&mut **s),
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.inner().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner().poll_close(cx)
    }
}
