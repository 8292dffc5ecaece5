//! TLS for client connections (`-Z`): the server's rustls settings, read from
//! the files `-o ssl_*` names, and [`TlsStream`], which puts TLS between a
//! connection and its socket (I/O: it reads files and drives a socket).
//!
//! rustls runs the handshake, through its unbuffered API, as a byte transform
//! driven by the connection's own reads and writes: it waits on the socket like
//! any read and never holds up the shard. A peer that breaks the protocol (a
//! plain client, garbage, a refused certificate) makes the read fail, and the
//! connection is closed.
//!
//! Once the handshake is done, rustls hands over the traffic keys (its interface
//! for kernel TLS, `dangerous_into_kernel_connection`) and [`Records`] seals
//! and opens the records itself with ring's AEADs, in place: a request is
//! decrypted where it was read and a reply encrypted where it is framed, with
//! no allocation per record (rustls's own record layer takes a buffer per
//! record each way, and copies each twice more). rustls still
//! derives the keys of a TLS 1.3 key update, which either side may ask for;
//! this side asks for one before a key seals as many records as its cipher
//! suite's confidentiality limit allows (TLS 1.2, which has no key update,
//! closes the connection there instead, as rustls does).
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::cli::{SessionCache, TlsSettings, TlsVersion, VerifyMode};
use futures_lite::{AsyncRead, AsyncWrite};
use ring::aead;
use rustls::kernel::KernelConnection;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    NoServerSessionStorage, ServerConnectionData, ServerSessionMemoryCache,
    UnbufferedServerConnection, WebPkiClientVerifier,
};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{
    ConnectionTrafficSecrets, ProtocolVersion, RootCertStore, ServerConfig, SupportedCipherSuite,
};
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// A record's header: content type, version, length.
const HEADER_BYTES: usize = 5;
/// The most plaintext one record carries.
const PLAINTEXT_MAX: usize = 16 * 1024;
/// The most a record's payload may exceed its plaintext: TLS 1.2 allows 2048
/// (TLS 1.3, 256).
const EXPANSION_MAX: usize = 2048;
/// Ciphertext read from the socket at once: room for one whole record.
const CIPHERTEXT_READ_BYTES: usize = HEADER_BYTES + PLAINTEXT_MAX + EXPANSION_MAX;
/// The most ciphertext held while the handshake needs more: a handshake
/// message (a client's certificate chain) may span several records, which
/// rustls joins where they were read.
const HANDSHAKE_READ_BYTES_MAX: usize = 256 * 1024;
/// Plaintext one write encrypts before it is sent: four records.
const WRITE_CHUNK_BYTES: usize = 4 * PLAINTEXT_MAX;
/// A ciphertext buffer larger than this once sent is given back.
const WRITE_KEEP_BYTES: usize = 2 * WRITE_CHUNK_BYTES;
/// The AEAD tag of every cipher suite spoken.
const TAG_BYTES: usize = 16;
/// The nonce of every cipher suite spoken.
const NONCE_BYTES: usize = 12;
/// TLS 1.2's explicit nonce of AES-GCM.
const EXPLICIT_NONCE_BYTES: usize = 8;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const HANDSHAKE_KEY_UPDATE: u8 = 24;
const ALERT_WARNING: u8 = 1;
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_USER_CANCELED: u8 = 90;

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
    // The records after the handshake are sealed and opened here (`Records`).
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// One direction's key, its IV and the sequence number of its next record.
struct Keys {
    key: aead::LessSafeKey,
    iv: [u8; NONCE_BYTES],
    seq: u64,
}

impl Keys {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> io::Result<Keys> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(invalid("a cipher suite without a record layer here")),
        };
        let key = aead::UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| invalid("a traffic key of the wrong length"))?;
        let iv = iv
            .as_ref()
            .try_into()
            .map_err(|_| invalid("a traffic IV of the wrong length"))?;
        Ok(Keys {
            key: aead::LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The IV with the sequence number XORed into its last eight bytes: the
    /// nonce of every record of TLS 1.3, and of TLS 1.2's ChaCha20-Poly1305
    /// and (as sent) AES-GCM.
    fn nonce(&self) -> [u8; NONCE_BYTES] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, content: u8, len: usize) -> aead::Aad<[u8; 13]> {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content;
    aad[9..11].copy_from_slice(&[3, 3]);
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aead::Aad::from(aad)
}

/// How records are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Outer type application data; the real type ends the plaintext.
    Tls13,
    /// The type in the header; AES-GCM sends an explicit nonce first.
    Tls12 { explicit_nonce: bool },
}

/// The record layer of a session past its handshake.
struct Records {
    kernel: KernelConnection<ServerConnectionData>,
    framing: Framing,
    tx: Keys,
    rx: Keys,
    /// Records sealed under one key before it is replaced (TLS 1.3) or the
    /// connection closed (TLS 1.2): the cipher suite's confidentiality limit.
    tx_limit: u64,
}

impl Records {
    fn new(conn: UnbufferedServerConnection) -> io::Result<Records> {
        let (secrets, kernel) = conn.dangerous_into_kernel_connection().map_err(tls_error)?;
        let (framing, tx_limit) = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(suite) => {
                (Framing::Tls13, suite.common.confidentiality_limit)
            }
            SupportedCipherSuite::Tls12(suite) => (
                Framing::Tls12 {
                    explicit_nonce: !matches!(
                        secrets.tx.1,
                        ConnectionTrafficSecrets::Chacha20Poly1305 { .. }
                    ),
                },
                suite.common.confidentiality_limit,
            ),
        };
        debug_assert_eq!(
            framing == Framing::Tls13,
            kernel.protocol_version() == ProtocolVersion::TLSv1_3
        );
        Ok(Records {
            kernel,
            framing,
            tx: Keys::new(secrets.tx)?,
            rx: Keys::new(secrets.rx)?,
            tx_limit,
        })
    }

    /// Appends `data` (at most one record's plaintext) to `out` as one record
    /// of type `content`. A key at its limit is replaced first.
    fn seal(&mut self, content: u8, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.tx.seq >= self.tx_limit {
            match self.framing {
                Framing::Tls13 => self.update_tx_key(out)?,
                Framing::Tls12 { .. } => {
                    return Err(invalid(
                        "traffic keys exhausted (TLS 1.2 cannot replace them)",
                    ))
                }
            }
        }
        self.seal_now(content, data, out)
    }

    fn seal_now(&mut self, content: u8, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        debug_assert!(data.len() <= PLAINTEXT_MAX);
        let start = out.len();
        let nonce = self.tx.nonce();
        let sealed = match self.framing {
            Framing::Tls13 => {
                let len = data.len() + 1 + TAG_BYTES;
                let header = [CONTENT_APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
                out.extend_from_slice(&header);
                out.extend_from_slice(data);
                out.push(content);
                self.tx.key.seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from(header),
                    &mut out[start + HEADER_BYTES..],
                )
            }
            Framing::Tls12 { explicit_nonce } => {
                let explicit = if explicit_nonce {
                    EXPLICIT_NONCE_BYTES
                } else {
                    0
                };
                let len = explicit + data.len() + TAG_BYTES;
                out.extend_from_slice(&[content, 3, 3, (len >> 8) as u8, len as u8]);
                out.extend_from_slice(&nonce[NONCE_BYTES - explicit..]);
                out.extend_from_slice(data);
                self.tx.key.seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    tls12_aad(self.tx.seq, content, data.len()),
                    &mut out[start + HEADER_BYTES + explicit..],
                )
            }
        };
        let tag = sealed.map_err(|_| invalid("sealing a record failed"))?;
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        Ok(())
    }

    /// Opens the whole record `record` (header included) in place: its
    /// content type, and where its plaintext lies in `record`.
    fn open(&mut self, record: &mut [u8]) -> io::Result<(u8, Range<usize>)> {
        let header: [u8; HEADER_BYTES] = record[..HEADER_BYTES].try_into().expect("a header");
        let (content, plain) = match self.framing {
            Framing::Tls13 => {
                if header[0] != CONTENT_APPLICATION_DATA {
                    return Err(invalid("an unprotected record after the handshake"));
                }
                let nonce = aead::Nonce::assume_unique_for_key(self.rx.nonce());
                let opened = self
                    .rx
                    .key
                    .open_in_place(nonce, aead::Aad::from(header), &mut record[HEADER_BYTES..])
                    .map_err(|_| invalid("a record that does not decrypt"))?;
                // The real type is the last byte that is not padding.
                let Some(end) = opened.iter().rposition(|&b| b != 0) else {
                    return Err(invalid("a record without a content type"));
                };
                (opened[end], HEADER_BYTES..HEADER_BYTES + end)
            }
            Framing::Tls12 { explicit_nonce } => {
                let explicit = if explicit_nonce {
                    EXPLICIT_NONCE_BYTES
                } else {
                    0
                };
                let Some(len) = record
                    .len()
                    .checked_sub(HEADER_BYTES + explicit + TAG_BYTES)
                else {
                    return Err(invalid("a record shorter than its tag"));
                };
                let mut nonce = self.rx.nonce();
                if explicit_nonce {
                    nonce[NONCE_BYTES - EXPLICIT_NONCE_BYTES..].copy_from_slice(
                        &record[HEADER_BYTES..HEADER_BYTES + EXPLICIT_NONCE_BYTES],
                    );
                }
                let at = HEADER_BYTES + explicit;
                self.rx
                    .key
                    .open_in_place(
                        aead::Nonce::assume_unique_for_key(nonce),
                        tls12_aad(self.rx.seq, header[0], len),
                        &mut record[at..],
                    )
                    .map_err(|_| invalid("a record that does not decrypt"))?;
                (header[0], at..at + len)
            }
        };
        self.rx.seq += 1;
        if plain.len() > PLAINTEXT_MAX {
            return Err(invalid("a record over the plaintext bound"));
        }
        Ok((content, plain))
    }

    /// Takes the handshake messages of one record: a TLS 1.3 key update (the
    /// client's next records use its new key; if it asks, this side's next
    /// ones too, announced in `out`). Anything else (a renegotiation, a
    /// message split over records) ends the connection.
    fn handshake(&mut self, mut messages: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.framing != Framing::Tls13 {
            return Err(invalid("a handshake message after a TLS 1.2 handshake"));
        }
        while !messages.is_empty() {
            let (kind, body, rest) = match messages {
                [kind, a, b, c, rest @ ..] => {
                    let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
                    if rest.len() < len {
                        return Err(invalid("a handshake message split over records"));
                    }
                    (*kind, &rest[..len], &rest[len..])
                }
                _ => return Err(invalid("a handshake message split over records")),
            };
            messages = rest;
            match (kind, body) {
                (HANDSHAKE_KEY_UPDATE, &[request @ (0 | 1)]) => {
                    if !messages.is_empty() {
                        return Err(invalid("a key update that does not end its record"));
                    }
                    self.rx = Keys::new(self.kernel.update_rx_secret().map_err(tls_error)?)?;
                    if request == 1 {
                        self.update_tx_key(out)?;
                    }
                }
                _ => return Err(invalid("an unexpected handshake message")),
            }
        }
        Ok(())
    }

    /// Announces a new key for this side's records (`update_not_requested`),
    /// under the old one, and takes it.
    fn update_tx_key(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.seal_now(CONTENT_HANDSHAKE, &[HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0], out)?;
        self.tx = Keys::new(self.kernel.update_tx_secret().map_err(tls_error)?)?;
        Ok(())
    }
}

/// Where a session is.
enum Phase {
    /// rustls runs the handshake.
    Handshake(Box<UnbufferedServerConnection>),
    /// Records are sealed and opened here.
    Traffic(Box<Records>),
    /// The handshake failed; only the connection's close is left.
    Failed,
}

/// What to do after one step of the handshake.
enum Step {
    Again,
    Read,
    Done,
    PeerClosed,
    Fail(io::Error),
}

/// A connection's TLS session over its socket `S`.
pub struct TlsStream<S> {
    socket: S,
    phase: Phase,
    /// Ciphertext read from the socket: `read[read_from..read_to]` is not yet
    /// opened (or given to rustls).
    read: Box<[u8]>,
    read_from: usize,
    read_to: usize,
    /// The plaintext of the record last opened, not yet read: in place in `read`.
    plain: Range<usize>,
    /// Application data rustls decrypted during the handshake, not yet read:
    /// `early[early_from..]`.
    early: Vec<u8>,
    early_from: usize,
    /// The socket said end of stream.
    socket_ended: bool,
    /// The client sent `close_notify`.
    peer_closed: bool,
    /// Ciphertext not yet taken by the socket: `write[written..]`.
    write: Vec<u8>,
    written: usize,
    /// `close_notify` has been queued.
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// A server session on `socket`; the handshake runs as the connection reads.
    pub fn new(socket: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>> {
        let conn = UnbufferedServerConnection::new(config).map_err(io::Error::other)?;
        Ok(TlsStream {
            socket,
            phase: Phase::Handshake(Box::new(conn)),
            read: vec![0; CIPHERTEXT_READ_BYTES].into_boxed_slice(),
            read_from: 0,
            read_to: 0,
            plain: 0..0,
            early: Vec::new(),
            early_from: 0,
            socket_ended: false,
            peer_closed: false,
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

    /// Writes every byte of ciphertext waiting. Ready once the socket took it
    /// all; while it waits, the socket wakes the task.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.write.len() {
            let n = ready!(Pin::new(&mut self.socket).poll_write(cx, &self.write[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.write.clear();
        self.written = 0;
        if self.write.capacity() > WRITE_KEEP_BYTES {
            self.write = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Reads more ciphertext after what is there, first moving what is there
    /// to the front if the buffer's end is reached. Ready(false): end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.read_from == self.read_to {
            self.read_from = 0;
            self.read_to = 0;
        } else if self.read_to == self.read.len() {
            self.read.copy_within(self.read_from..self.read_to, 0);
            self.read_to -= self.read_from;
            self.read_from = 0;
        }
        if self.read_to == self.read.len() {
            // Past the handshake a whole record fits, and what is there is less.
            let size = self.read.len() * 2;
            if !matches!(self.phase, Phase::Handshake(_)) || size > HANDSHAKE_READ_BYTES_MAX {
                return Poll::Ready(Err(invalid("a record over the ciphertext bound")));
            }
            let mut larger = vec![0; size].into_boxed_slice();
            larger[..self.read_to].copy_from_slice(&self.read[..self.read_to]);
            self.read = larger;
        }
        let n = ready!(Pin::new(&mut self.socket).poll_read(cx, &mut self.read[self.read_to..]))?;
        if n == 0 {
            self.socket_ended = true;
            return Poll::Ready(Ok(false));
        }
        self.read_to += n;
        Poll::Ready(Ok(true))
    }

    /// Drives the handshake until it is done (ready at once after it).
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Phase::Traffic(_) = self.phase {
            return Poll::Ready(Ok(()));
        }
        loop {
            // What rustls produced goes out before it is asked for more.
            ready!(self.poll_send(cx))?;
            let step = match &mut self.phase {
                Phase::Traffic(_) => return Poll::Ready(Ok(())),
                Phase::Failed => return Poll::Ready(Err(invalid("the TLS handshake failed"))),
                Phase::Handshake(conn) => {
                    let incoming = &mut self.read[self.read_from..self.read_to];
                    let UnbufferedStatus { mut discard, state } =
                        conn.process_tls_records(incoming);
                    let step = match state {
                        Err(e) => Step::Fail(tls_error(e)),
                        Ok(ConnectionState::EncodeTlsData(mut data)) => {
                            match encode(&mut data, &mut self.write) {
                                Ok(()) => Step::Again,
                                Err(e) => Step::Fail(e),
                            }
                        }
                        Ok(ConnectionState::TransmitTlsData(data)) => {
                            // Sent by `poll_send` before rustls is asked again.
                            data.done();
                            Step::Again
                        }
                        Ok(ConnectionState::BlockedHandshake) => Step::Read,
                        Ok(ConnectionState::WriteTraffic(_)) => Step::Done,
                        Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                            let mut step = Step::Again;
                            while let Some(record) = traffic.next_record() {
                                match record {
                                    Ok(record) => {
                                        discard += record.discard;
                                        self.early.extend_from_slice(record.payload);
                                    }
                                    Err(e) => {
                                        step = Step::Fail(tls_error(e));
                                        break;
                                    }
                                }
                            }
                            step
                        }
                        Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                            Step::PeerClosed
                        }
                        Ok(_) => Step::Fail(invalid("an unexpected state of the TLS handshake")),
                    };
                    self.read_from += discard;
                    step
                }
            };
            match step {
                Step::Again => {}
                Step::Read => {
                    if !ready!(self.poll_fill(cx))? {
                        // The end of the stream, as for a plain one.
                        self.peer_closed = true;
                        return Poll::Ready(Ok(()));
                    }
                }
                Step::Done => {
                    let Phase::Handshake(conn) = std::mem::replace(&mut self.phase, Phase::Failed)
                    else {
                        unreachable!("the handshake was running");
                    };
                    self.phase = Phase::Traffic(Box::new(Records::new(*conn)?));
                    return Poll::Ready(Ok(()));
                }
                Step::PeerClosed => {
                    self.peer_closed = true;
                    return Poll::Ready(Ok(()));
                }
                Step::Fail(e) => {
                    // rustls queued its alert: one more call encodes it, and
                    // it is sent if the socket takes it at once.
                    if let Phase::Handshake(conn) = &mut self.phase {
                        let incoming = &mut self.read[self.read_from..self.read_to];
                        if let Ok(ConnectionState::EncodeTlsData(mut data)) =
                            conn.process_tls_records(incoming).state
                        {
                            if encode(&mut data, &mut self.write).is_ok() {
                                let _ = self.poll_send(cx);
                            }
                        }
                    }
                    self.phase = Phase::Failed;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

/// The record layer, once the handshake is done.
fn records(phase: &mut Phase) -> io::Result<&mut Records> {
    match phase {
        Phase::Traffic(records) => Ok(records),
        _ => Err(io::ErrorKind::NotConnected.into()),
    }
}

/// Appends the handshake record rustls has to `write`.
fn encode(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>,
    write: &mut Vec<u8>,
) -> io::Result<()> {
    let at = write.len();
    let mut room = 4096;
    loop {
        write.resize(at + room, 0);
        match data.encode(&mut write[at..]) {
            Ok(n) => {
                write.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(e)) => room = e.required_size,
            Err(e) => {
                write.truncate(at);
                return Err(invalid(e.to_string()));
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_handshake(cx))?;
        loop {
            // Replies the socket had not taken, and key updates, go first.
            ready!(this.poll_send(cx))?;
            if this.early_from < this.early.len() {
                let n = buf.len().min(this.early.len() - this.early_from);
                buf[..n].copy_from_slice(&this.early[this.early_from..this.early_from + n]);
                this.early_from += n;
                if this.early_from == this.early.len() {
                    this.early = Vec::new();
                    this.early_from = 0;
                }
                return Poll::Ready(Ok(n));
            }
            if !this.plain.is_empty() {
                let n = buf.len().min(this.plain.len());
                buf[..n].copy_from_slice(&this.read[this.plain.start..this.plain.start + n]);
                this.plain.start += n;
                return Poll::Ready(Ok(n));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(0));
            }
            let there = this.read_to - this.read_from;
            if there >= HEADER_BYTES {
                let at = this.read_from;
                let len = u16::from_be_bytes([this.read[at + 3], this.read[at + 4]]) as usize;
                if len > PLAINTEXT_MAX + EXPANSION_MAX {
                    return Poll::Ready(Err(invalid("a record over the ciphertext bound")));
                }
                if there >= HEADER_BYTES + len {
                    let record = at..at + HEADER_BYTES + len;
                    this.read_from = record.end;
                    let records = records(&mut this.phase)?;
                    let (content, plain) = records.open(&mut this.read[record.clone()])?;
                    let plain = record.start + plain.start..record.start + plain.end;
                    match content {
                        CONTENT_APPLICATION_DATA => this.plain = plain,
                        CONTENT_ALERT => match this.read[plain] {
                            [_, ALERT_CLOSE_NOTIFY] => this.peer_closed = true,
                            [ALERT_WARNING, ALERT_USER_CANCELED] => {}
                            _ => return Poll::Ready(Err(invalid("the client sent an alert"))),
                        },
                        CONTENT_HANDSHAKE => {
                            records.handshake(&this.read[plain], &mut this.write)?
                        }
                        _ => return Poll::Ready(Err(invalid("a record of an unexpected type"))),
                    }
                    continue;
                }
            }
            if this.socket_ended {
                // Without close_notify: the end of the stream, as for a plain one.
                return Poll::Ready(Ok(0));
            }
            ready!(this.poll_fill(cx))?;
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
        ready!(this.poll_handshake(cx))?;
        // What was encrypted before goes out first, so the ciphertext held
        // here stays within a few records.
        ready!(this.poll_send(cx))?;
        let take = buf.len().min(WRITE_CHUNK_BYTES);
        let records = records(&mut this.phase)?;
        for chunk in buf[..take].chunks(PLAINTEXT_MAX) {
            records.seal(CONTENT_APPLICATION_DATA, chunk, &mut this.write)?;
        }
        // Sent now: the caller does not flush. If the socket cannot take it
        // all yet, the rest goes before the next read or write.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
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
            if let Ok(records) = records(&mut this.phase) {
                let alert = [ALERT_WARNING, ALERT_CLOSE_NOTIFY];
                let _ = records.seal(CONTENT_ALERT, &alert, &mut this.write);
            }
        }
        // The alert is sent if the socket takes it; an error is no reason to
        // keep the socket open.
        if this.poll_send(cx).is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut this.socket).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::ring::cipher_suite as suites;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ClientConnection, SupportedProtocolVersion};
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::process::Command;
    use std::rc::Rc;

    /// Both directions of a connection, in memory.
    #[derive(Default)]
    struct Wire {
        to_server: VecDeque<u8>,
        to_client: VecDeque<u8>,
    }

    /// The server's end: reads what the client sent (pending when nothing
    /// is there), takes every write whole.
    struct ServerEnd(Rc<RefCell<Wire>>);

    impl AsyncRead for ServerEnd {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let mut wire = self.0.borrow_mut();
            if wire.to_server.is_empty() {
                return Poll::Pending;
            }
            let n = buf.len().min(wire.to_server.len());
            for (b, byte) in buf.iter_mut().zip(wire.to_server.drain(..n)) {
                *b = byte;
            }
            Poll::Ready(Ok(n))
        }
    }

    impl AsyncWrite for ServerEnd {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.0.borrow_mut().to_client.extend(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A self-signed certificate (and its key) named `name` for the DNS
    /// names `names`, made with openssl in this test process's directory.
    fn self_signed(name: &str, names: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("ringcache-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pem, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={name}"), "-addext"])
            .arg(format!("subjectAltName={names}"))
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&pem)
            .output()
            .expect("run openssl (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (pem, key)
    }

    /// The server's certificate, for `localhost`, made once per test process.
    fn certificate() -> (PathBuf, PathBuf) {
        static MADE: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
        MADE.get_or_init(|| self_signed("localhost", "DNS:localhost"))
            .clone()
    }

    struct Session {
        client: ClientConnection,
        server: TlsStream<ServerEnd>,
        wire: Rc<RefCell<Wire>>,
        /// Plaintext the client has read.
        client_got: Vec<u8>,
    }

    fn cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    impl Session {
        /// A session over `suite` whose handshake has not begun.
        fn start(suite: SupportedCipherSuite) -> Session {
            Session::start_with(suite, None)
        }

        /// The same, the client showing `client_cert` (its certificate and
        /// key), which the server requires.
        fn start_with(
            suite: SupportedCipherSuite,
            client_cert: Option<(PathBuf, PathBuf)>,
        ) -> Session {
            let (pem, key) = certificate();
            let settings = TlsSettings {
                chain_cert: pem.clone(),
                key,
                ca_cert: client_cert.as_ref().map(|(pem, _)| pem.clone()),
                verify_mode: match client_cert {
                    Some(_) => VerifyMode::Require,
                    None => VerifyMode::None,
                },
                min_version: TlsVersion::Tls12,
                session_cache: SessionCache::On,
            };
            let config = server_config(&settings).unwrap();
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&pem).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
            #[allow(deprecated)]
            let mut provider = rustls::crypto::ring::default_provider();
            provider.cipher_suites = vec![suite];
            let version: &'static SupportedProtocolVersion = suite.version();
            let client_config = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots);
            let client_config = match client_cert {
                Some((pem, key)) => {
                    let chain = CertificateDer::pem_file_iter(&pem)
                        .unwrap()
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap();
                    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
                    client_config.with_client_auth_cert(chain, key).unwrap()
                }
                None => client_config.with_no_client_auth(),
            };
            let name = ServerName::try_from("localhost").unwrap();
            let client = ClientConnection::new(Arc::new(client_config), name).unwrap();
            let wire = Rc::new(RefCell::new(Wire::default()));
            let server = TlsStream::new(ServerEnd(wire.clone()), config).unwrap();
            Session {
                client,
                server,
                wire,
                client_got: Vec::new(),
            }
        }

        /// Drives the handshake until both sides are past it; what the
        /// server read meanwhile.
        fn handshake(&mut self) -> Vec<u8> {
            let mut read = Vec::new();
            for _ in 0..10 {
                self.pump();
                read.extend(self.server_reads().unwrap());
            }
            self.pump();
            assert!(!self.client.is_handshaking());
            assert!(matches!(self.server.phase, Phase::Traffic(_)));
            read
        }

        /// A session over `suite`, past its handshake.
        fn new(suite: SupportedCipherSuite) -> Session {
            let mut session = Session::start(suite);
            assert!(session.handshake().is_empty());
            session
        }

        /// Carries what each side has written to the other.
        fn pump(&mut self) {
            let mut out = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut out).unwrap();
            }
            self.wire.borrow_mut().to_server.extend(out);
            let incoming: Vec<u8> = self.wire.borrow_mut().to_client.drain(..).collect();
            let mut incoming = &incoming[..];
            while !incoming.is_empty() {
                self.client.read_tls(&mut incoming).unwrap();
                self.client.process_new_packets().unwrap();
                let _ = self.client.reader().read_to_end(&mut self.client_got);
            }
        }

        /// Everything the server can read now.
        fn server_reads(&mut self) -> io::Result<Vec<u8>> {
            let mut got = Vec::new();
            let mut buf = [0; 5000];
            loop {
                match Pin::new(&mut self.server).poll_read(&mut cx(), &mut buf) {
                    Poll::Ready(Ok(0)) | Poll::Pending => return Ok(got),
                    Poll::Ready(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Poll::Ready(Err(e)) => return Err(e),
                }
            }
        }

        fn server_writes(&mut self, mut data: &[u8]) {
            while !data.is_empty() {
                match Pin::new(&mut self.server).poll_write(&mut cx(), data) {
                    Poll::Ready(Ok(n)) => data = &data[n..],
                    other => panic!("the server's write: {other:?}"),
                }
            }
        }

        /// Each of `sizes` bytes from the client, echoed by the server.
        fn echo(&mut self, sizes: &[usize]) {
            for &size in sizes {
                let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
                let mut got = Vec::new();
                for chunk in data.chunks(10_000) {
                    self.client.writer().write_all(chunk).unwrap();
                    self.pump();
                    got.extend(self.server_reads().unwrap());
                }
                assert_eq!(got.len(), size, "the server read");
                assert!(got == data, "the server read other bytes");
                self.server_writes(&got);
                self.pump();
                let back = std::mem::take(&mut self.client_got);
                assert!(
                    back == data,
                    "the client read other bytes ({} of {size})",
                    back.len()
                );
            }
        }

        fn records(&mut self) -> &mut Records {
            match &mut self.server.phase {
                Phase::Traffic(records) => records,
                _ => panic!("not past the handshake"),
            }
        }
    }

    const SIZES: &[usize] = &[
        1,
        100,
        PLAINTEXT_MAX - 1,
        PLAINTEXT_MAX,
        PLAINTEXT_MAX + 1,
        70_000,
    ];

    #[test]
    fn records_sealed_and_opened_here_carry_every_size_in_every_suite() {
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
            suites::TLS13_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ] {
            let mut session = Session::new(suite);
            session.echo(SIZES);
        }
    }

    #[test]
    fn requests_sent_with_the_clients_finished_or_byte_by_byte_are_read() {
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ] {
            // Written before the handshake ends: sent right behind the
            // client's Finished, so rustls decrypts it before the handover.
            let mut session = Session::start(suite);
            session
                .client
                .writer()
                .write_all(b"get a\r\nget b\r\n")
                .unwrap();
            let mut got = session.handshake();
            got.extend(session.server_reads().unwrap());
            assert_eq!(got, b"get a\r\nget b\r\n", "{suite:?}");
            session.client.writer().write_all(b"get c\r\n").unwrap();
            let mut out = Vec::new();
            session.client.write_tls(&mut out).unwrap();
            let mut got = Vec::new();
            for byte in out {
                session.wire.borrow_mut().to_server.push_back(byte);
                got.extend(session.server_reads().unwrap());
            }
            assert_eq!(got, b"get c\r\n", "{suite:?}");
        }
    }

    #[test]
    fn a_client_certificate_larger_than_a_record_is_read() {
        // About 50 KiB of names: its Certificate message spans four records,
        // which rustls joins in the read buffer.
        let names: Vec<String> = (0..2500)
            .map(|i| format!("DNS:client-{i:04}.example"))
            .collect();
        let cert = self_signed("large-client", &names.join(","));
        assert!(std::fs::metadata(&cert.0).unwrap().len() > 3 * PLAINTEXT_MAX as u64);
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ] {
            let mut session = Session::start_with(suite, Some(cert.clone()));
            assert!(session.handshake().is_empty());
            session.echo(&[10, 30_000]);
        }
    }

    #[test]
    fn key_updates_asked_by_the_client_or_due_at_the_limit_keep_the_session() {
        let mut session = Session::new(suites::TLS13_AES_256_GCM_SHA384);
        session.echo(&[10]);
        // rustls's client asks for the server's update too.
        session.client.refresh_traffic_keys().unwrap();
        session.echo(&[10, 20_000]);
        // Each side's key is new: 1 + 2 records under it each way.
        assert_eq!(session.records().rx.seq, 3, "the client's new key");
        assert_eq!(session.records().tx.seq, 3, "the server's new key");
        // This side replaces its key at the limit, announcing it.
        session.records().tx_limit = 2;
        for _ in 0..3 {
            session.echo(&[100, 40_000]);
        }
        assert!(
            session.records().tx.seq <= 3,
            "the server's key was replaced"
        );
    }

    #[test]
    fn changed_cut_or_extra_ciphertext_never_reads_as_other_plaintext() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        for suite in [
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ] {
            for round in 0..100 {
                let mut session = Session::new(suite);
                let data: Vec<u8> = (0..1 + next() % 40_000).map(|i| (i % 251) as u8).collect();
                session.client.writer().write_all(&data).unwrap();
                let mut out = Vec::new();
                while session.client.wants_write() {
                    session.client.write_tls(&mut out).unwrap();
                }
                let at = next() % out.len();
                match round % 3 {
                    0 => out[at] ^= 1 << (next() % 8),
                    1 => out.truncate(at),
                    _ => {
                        let extra: Vec<u8> = (0..1 + next() % 40).map(|_| next() as u8).collect();
                        out.splice(at..at, extra);
                    }
                }
                let mut got = Vec::new();
                let mut rest = &out[..];
                while !rest.is_empty() {
                    let n = (1 + next() % 3000).min(rest.len());
                    session.wire.borrow_mut().to_server.extend(&rest[..n]);
                    rest = &rest[n..];
                    match session.server_reads() {
                        Ok(read) => got.extend(read),
                        Err(e) => {
                            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                            break;
                        }
                    }
                }
                assert!(
                    data.starts_with(&got),
                    "{suite:?} round {round}: {} bytes read that the client did not send",
                    got.len()
                );
            }
        }
    }

    #[test]
    fn tls12_closes_at_the_limit_it_cannot_pass() {
        let mut session = Session::new(suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256);
        session.echo(&[10]);
        session.records().tx_limit = session.records().tx.seq;
        match Pin::new(&mut session.server).poll_write(&mut cx(), b"x") {
            Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("a write past the limit: {other:?}"),
        }
    }

    #[test]
    fn close_notify_ends_the_stream_and_a_changed_byte_fails_it() {
        let mut session = Session::new(suites::TLS13_AES_128_GCM_SHA256);
        session.echo(&[5]);
        session.client.send_close_notify();
        session.pump();
        let mut buf = [0; 10];
        match Pin::new(&mut session.server).poll_read(&mut cx(), &mut buf) {
            Poll::Ready(Ok(0)) => {}
            other => panic!("a read after close_notify: {other:?}"),
        }

        for suite in [
            suites::TLS13_CHACHA20_POLY1305_SHA256,
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ] {
            let mut session = Session::new(suite);
            session.echo(&[5]);
            session.client.writer().write_all(b"get k\r\n").unwrap();
            let mut out = Vec::new();
            session.client.write_tls(&mut out).unwrap();
            let last = out.len() - 1;
            out[last] ^= 1;
            session.wire.borrow_mut().to_server.extend(out);
            let err = session
                .server_reads()
                .expect_err("a changed record was read");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }
}
