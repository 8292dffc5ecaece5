//! A MAC on every frame between members (pure: bytes in, bytes out). Once the
//! handshake of [`super::auth`] has made a connection a member's, everything
//! either side sends on it travels in frames, each carrying an HMAC-SHA256
//! under a key of that connection and that direction:
//!
//! ```text
//! <len: u32, big-endian> <payload: len bytes> <tag: 32 bytes>
//! tag = HMAC-SHA256(key, seq len payload)       seq: u64 big-endian, 0, 1, 2, ...
//! key = HMAC-SHA256(secret, "frames from client" nonce_c nonce_s)   client → server
//!       HMAC-SHA256(secret, "frames from server" nonce_c nonce_s)   server → client
//! ```
//!
//! The payload is what the plain connection would carry (memcached's
//! protocol and `rc` lines); nothing is encrypted. A frame altered, dropped,
//! replayed, reordered, or moved to another connection or the other
//! direction fails its tag, since the sequence number is counted on both
//! sides and the keys differ per connection and direction. A payload is at
//! most [`FRAME_PAYLOAD_MAX_BYTES`]; a longer write is cut into several frames.
//! A receiver that finds a bad tag or a longer length reports it, and the
//! connection closes.

use super::auth::{Secret, MAC_BYTES, NONCE_BYTES};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Most bytes of payload one frame carries.
pub const FRAME_PAYLOAD_MAX_BYTES: usize = 64 * 1024;
/// Bytes of a frame's length field.
pub const FRAME_LEN_BYTES: usize = 4;
/// Bytes a frame adds to its payload.
pub const FRAME_OVERHEAD_BYTES: usize = FRAME_LEN_BYTES + MAC_BYTES;
/// Most bytes of one frame.
pub const FRAME_MAX_BYTES: usize = FRAME_PAYLOAD_MAX_BYTES + FRAME_OVERHEAD_BYTES;

type HmacSha256 = Hmac<Sha256>;

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The side that opened the connection and sent `rc hello`.
    Client,
    /// The side that accepted it.
    Server,
}

/// The frame keys of one connection, for one end: what it seals and what it opens.
pub struct Sealing {
    pub send: Sealer,
    pub receive: Opener,
}

impl Sealing {
    /// The keys of the connection whose handshake used `nonce_c` and `nonce_s`.
    pub fn new(
        secret: &Secret,
        nonce_c: &[u8; NONCE_BYTES],
        nonce_s: &[u8; NONCE_BYTES],
        end: End,
    ) -> Sealing {
        let from_client = secret.derive(b"frames from client", nonce_c, nonce_s);
        let from_server = secret.derive(b"frames from server", nonce_c, nonce_s);
        let (send, receive) = match end {
            End::Client => (from_client, from_server),
            End::Server => (from_server, from_client),
        };
        Sealing {
            send: Sealer {
                mac: keyed(&send),
                seq: 0,
            },
            receive: Opener {
                mac: keyed(&receive),
                seq: 0,
            },
        }
    }
}

fn keyed(key: &[u8; MAC_BYTES]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// A frame's tag: the MAC, already keyed, over its number, length and payload.
fn tag(keyed: &HmacSha256, seq: u64, payload: &[u8]) -> HmacSha256 {
    let mut mac = keyed.clone();
    mac.update(&seq.to_be_bytes());
    mac.update(&(payload.len() as u32).to_be_bytes());
    mac.update(payload);
    mac
}

/// Seals what one end sends.
pub struct Sealer {
    mac: HmacSha256,
    seq: u64,
}

impl Sealer {
    /// Appends `payload` to `out` as frames of at most
    /// [`FRAME_PAYLOAD_MAX_BYTES`] each.
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        for piece in payload.chunks(FRAME_PAYLOAD_MAX_BYTES) {
            out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(&tag(&self.mac, self.seq, piece).finalize().into_bytes());
            self.seq += 1;
        }
    }
}

/// What [`Opener::open`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The frame has yet to arrive whole; nothing is used.
    Incomplete,
    /// A frame whose tag is right: its payload is `buf[FRAME_LEN_BYTES..FRAME_LEN_BYTES + len]`,
    /// and it used `used` bytes.
    Frame { len: usize, used: usize },
}

/// Why a frame was refused: the connection closes.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is past [`FRAME_PAYLOAD_MAX_BYTES`].
    TooLong(usize),
    /// The tag is wrong: altered, replayed, reordered, or no member's frame.
    BadTag,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLong(len) => write!(
                f,
                "a frame of {len} bytes, past the bound of {FRAME_PAYLOAD_MAX_BYTES}"
            ),
            FrameError::BadTag => write!(f, "a frame whose MAC is wrong"),
        }
    }
}

/// Checks what the other end sent.
pub struct Opener {
    mac: HmacSha256,
    seq: u64,
}

impl Opener {
    /// Checks the frame at the front of `buf` (compared in constant time).
    pub fn open(&mut self, buf: &[u8]) -> Result<Opened, FrameError> {
        let Some(len) = buf.first_chunk::<FRAME_LEN_BYTES>() else {
            return Ok(Opened::Incomplete);
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > FRAME_PAYLOAD_MAX_BYTES {
            return Err(FrameError::TooLong(len));
        }
        let used = len + FRAME_OVERHEAD_BYTES;
        if buf.len() < used {
            return Ok(Opened::Incomplete);
        }
        let payload = &buf[FRAME_LEN_BYTES..FRAME_LEN_BYTES + len];
        tag(&self.mac, self.seq, payload)
            .verify_slice(&buf[FRAME_LEN_BYTES + len..used])
            .map_err(|_| FrameError::BadTag)?;
        self.seq += 1;
        Ok(Opened::Frame { len, used })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::auth::SECRET_BYTES_MIN;

    fn pair(secret: u8) -> (Sealing, Sealing) {
        let secret = Secret::from_bytes(&[secret; SECRET_BYTES_MIN]);
        let (c, s) = ([1; NONCE_BYTES], [2; NONCE_BYTES]);
        (
            Sealing::new(&secret, &c, &s, End::Client),
            Sealing::new(&secret, &c, &s, End::Server),
        )
    }

    /// Opens every frame of `buf`, returning the payloads joined.
    fn open_all(opener: &mut Opener, mut buf: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut plain = Vec::new();
        while !buf.is_empty() {
            match opener.open(buf)? {
                Opened::Incomplete => panic!("a cut frame"),
                Opened::Frame { len, used } => {
                    plain.extend_from_slice(&buf[FRAME_LEN_BYTES..FRAME_LEN_BYTES + len]);
                    buf = &buf[used..];
                }
            }
        }
        Ok(plain)
    }

    #[test]
    fn what_one_end_seals_the_other_opens_in_both_directions() {
        let (mut client, mut server) = pair(5);
        let mut wire = Vec::new();
        client.send.seal(b"rc fwd 3\r\nget k\r\nmn\r\n", &mut wire);
        client.send.seal(b"mn\r\n", &mut wire);
        assert_eq!(
            open_all(&mut server.receive, &wire).unwrap(),
            b"rc fwd 3\r\nget k\r\nmn\r\nmn\r\n"
        );
        let mut back = Vec::new();
        server.send.seal(b"END\r\nMN\r\n", &mut back);
        assert_eq!(
            open_all(&mut client.receive, &back).unwrap(),
            b"END\r\nMN\r\n"
        );
    }

    #[test]
    fn a_frame_is_incomplete_until_its_last_byte_arrives() {
        let (mut client, mut server) = pair(5);
        let mut wire = Vec::new();
        client.send.seal(b"version\r\n", &mut wire);
        for cut in 0..wire.len() {
            assert_eq!(server.receive.open(&wire[..cut]), Ok(Opened::Incomplete));
        }
        assert_eq!(
            server.receive.open(&wire),
            Ok(Opened::Frame {
                len: 9,
                used: wire.len()
            })
        );
    }

    #[test]
    fn a_long_write_is_cut_at_the_bound_and_a_longer_length_is_refused() {
        let (mut client, mut server) = pair(5);
        let payload = vec![b'x'; FRAME_PAYLOAD_MAX_BYTES * 2 + 1];
        let mut wire = Vec::new();
        client.send.seal(&payload, &mut wire);
        assert_eq!(wire.len(), payload.len() + 3 * FRAME_OVERHEAD_BYTES);
        assert_eq!(open_all(&mut server.receive, &wire).unwrap(), payload);

        let mut too_long = ((FRAME_PAYLOAD_MAX_BYTES + 1) as u32)
            .to_be_bytes()
            .to_vec();
        too_long.extend_from_slice(b"x");
        assert_eq!(
            server.receive.open(&too_long),
            Err(FrameError::TooLong(FRAME_PAYLOAD_MAX_BYTES + 1))
        );
    }

    #[test]
    fn an_altered_replayed_reflected_or_foreign_frame_fails_its_tag() {
        let (mut client, mut server) = pair(5);
        let mut first = Vec::new();
        client.send.seal(b"rc rep 2\r\nmd k q\r\n", &mut first);
        // Altered: one payload byte.
        let mut altered = first.clone();
        altered[FRAME_LEN_BYTES + 3] ^= 1;
        assert_eq!(server.receive.open(&altered), Err(FrameError::BadTag));
        assert!(matches!(
            server.receive.open(&first),
            Ok(Opened::Frame { .. })
        ));
        // Replayed: the receiver now expects the next number.
        assert_eq!(server.receive.open(&first), Err(FrameError::BadTag));
        // Reflected: the client does not take its own frame back.
        assert_eq!(client.receive.open(&first), Err(FrameError::BadTag));
        // Foreign: another secret, or another connection's nonces.
        let (_, mut stranger) = pair(6);
        assert_eq!(stranger.receive.open(&first), Err(FrameError::BadTag));
        let secret = Secret::from_bytes(&[5; SECRET_BYTES_MIN]);
        let mut other_connection =
            Sealing::new(&secret, &[1; NONCE_BYTES], &[3; NONCE_BYTES], End::Server);
        assert_eq!(
            other_connection.receive.open(&first),
            Err(FrameError::BadTag)
        );
    }
}
