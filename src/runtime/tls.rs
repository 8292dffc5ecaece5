//! TLS for client connections (`-Z`): the server's rustls settings, read from
//! the files `-o ssl_*` names, and [`TlsStream`], which puts rustls between a
//! connection and its socket (I/O: it reads files and drives a socket).
//!
//! rustls is used as a byte transform: ciphertext read from the socket is fed to
//! it and the plaintext it yields is what the connection reads; what the
//! connection writes is encrypted and the ciphertext written to the socket. The
//! stream is the same `AsyncRead`/`AsyncWrite` either socket path gives, so the
//! handshake is a state machine driven by the connection's own reads and writes:
//! it waits on the socket like any read and never holds up the shard. A peer that
//! breaks the protocol (a plain client, garbage, a refused certificate) makes the
//! read fail, and the connection is closed.
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::cli::{SessionCache, TlsSettings, TlsVersion, VerifyMode};
use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// Ciphertext read from the socket at once: one whole TLS record and its header.
const CIPHERTEXT_READ_BYTES: usize = 16 * 1024 + 512;

/// Sessions kept for resumption with `-o ssl_session_cache`.
const SESSION_CACHE_ENTRIES: usize = 4096;

/// The rustls server settings `settings` asks for, or why they cannot be had
/// (a file missing or unreadable, a key that does not match its certificate).
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    // rustls 0.23.48 marks the ring provider deprecated because it offers no
    // post-quantum key exchange; aws-lc-rs, which does, needs a much heavier
    // build. Classical ECDHE (X25519, P-256, P-384) is what memcached -Z offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain_name = settings.chain_cert.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.chain_cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("-o ssl_chain_cert={chain_name}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "-o ssl_chain_cert={chain_name}: no PEM certificate in it"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| format!("-o ssl_key={}: {e}", settings.key.display()))?;
    let verifier = match (settings.verify_mode, &settings.ca_cert) {
        (VerifyMode::None, _) | (_, None) => WebPkiClientVerifier::no_client_auth(),
        (mode, Some(ca)) => {
            let ca_name = ca.display();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("-o ssl_ca_cert={ca_name}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("-o ssl_ca_cert={ca_name}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("-o ssl_ca_cert={ca_name}: {e}"))?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = match mode {
                VerifyMode::Request => builder.allow_unauthenticated(),
                _ => builder,
            };
            builder
                .build()
                .map_err(|e| format!("-o ssl_ca_cert={ca_name}: {e}"))?
        }
    };
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("-Z: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "-o ssl_chain_cert={chain_name},ssl_key={}: {e}",
                settings.key.display()
            )
        })?;
    config.session_storage = match settings.session_cache {
        SessionCache::On => ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
        SessionCache::Off => Arc::new(NoServerSessionStorage {}),
    };
    if settings.session_cache == SessionCache::Off {
        // Without a cache, a TLS 1.3 ticket names a session no one keeps.
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// A connection's TLS session over its socket `S`.
pub struct TlsStream<S> {
    socket: S,
    tls: ServerConnection,
    /// Ciphertext read from the socket, not yet given to rustls: `read[from..to]`.
    read: Box<[u8]>,
    read_from: usize,
    read_to: usize,
    /// The socket said end of stream.
    socket_ended: bool,
    /// Ciphertext rustls produced, not yet taken by the socket: `write[written..]`.
    write: Vec<u8>,
    written: usize,
    /// `close_notify` has been queued.
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// A server session on `socket`; the handshake runs as the connection reads.
    pub fn new(socket: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let tls = ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            socket,
            tls,
            read: vec![0; CIPHERTEXT_READ_BYTES].into_boxed_slice(),
            read_from: 0,
            read_to: 0,
            socket_ended: false,
            write: Vec::new(),
            written: 0,
            closing: false,
        })
    }

    /// A server session on `socket` that has already read `received`, the
    /// first bytes of the client's handshake.
    pub fn with_received(
        socket: S,
        config: Arc<ServerConfig>,
        received: &[u8],
    ) -> io::Result<TlsStream<S>> {
        let mut stream = TlsStream::new(socket, config)?;
        if received.len() > stream.read.len() {
            stream.read = vec![0; received.len()].into_boxed_slice();
        }
        stream.read[..received.len()].copy_from_slice(received);
        stream.read_to = received.len();
        Ok(stream)
    }

    /// The stream the session runs over.
    pub fn socket(&self) -> &S {
        &self.socket
    }

    /// Writes every byte of ciphertext rustls has to send. Ready once the socket
    /// took it all; while it waits, the socket wakes the task.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.written < self.write.len() {
                let n =
                    ready!(Pin::new(&mut self.socket).poll_write(cx, &self.write[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                continue;
            }
            self.write.clear();
            self.written = 0;
            if !self.tls.wants_write() {
                return Poll::Ready(Ok(()));
            }
            self.tls.write_tls(&mut self.write)?;
        }
    }

    /// Gives rustls the ciphertext read and not yet given; a protocol error
    /// (garbage, a plain client, a refused certificate) sends its alert if the
    /// socket takes it at once, and fails the read.
    fn feed(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let mut ciphertext = &self.read[self.read_from..self.read_to];
        let before = ciphertext.len();
        let fed = self.tls.read_tls(&mut ciphertext);
        self.read_from += before - ciphertext.len();
        fed?;
        if let Err(e) = self.tls.process_new_packets() {
            let _ = self.poll_send(cx);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            // Handshake messages, and replies the socket had not taken, go first.
            ready!(this.poll_send(cx))?;
            match this.tls.reader().read(buf) {
                // Ok(0): the client sent close_notify.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.read_from < this.read_to {
                this.feed(cx)?;
                continue;
            }
            if this.socket_ended {
                // Without close_notify: the end of the stream, as for a plain one.
                return Poll::Ready(Ok(0));
            }
            let n = ready!(Pin::new(&mut this.socket).poll_read(cx, &mut this.read))?;
            if n == 0 {
                this.socket_ended = true;
            }
            this.read_from = 0;
            this.read_to = n;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            // What was encrypted before goes out first, so the ciphertext held
            // here stays within rustls's buffer limit.
            ready!(this.poll_send(cx))?;
            let n = this.tls.writer().write(buf)?;
            if n > 0 {
                // Sent now: the caller does not flush. If the socket cannot take
                // it all yet, the rest goes before the next read or write.
                if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(n));
            }
            if !this.tls.wants_write() {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.tls.send_close_notify();
        }
        // The alert is sent if the socket takes it; an error is no reason to
        // keep the socket open.
        if this.poll_send(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.socket).poll_close(cx)
    }
}
