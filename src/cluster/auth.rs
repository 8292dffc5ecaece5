//! Members only: the cluster secret and the challenge-response that opens every
//! connection between nodes, and between an admin and a node (pure: bytes in,
//! bytes out; randomness and sockets are the caller's, in `runtime::auth`).
//!
//! A connection may send `rc` lines only once it has shown it knows the
//! cluster secret, without sending it. In a packet capture:
//!
//! ```text
//! → rc hello <who> <nonce_c>          who: the sender's node id, or "admin"
//! ← rc challenge <nonce_s> <mac_s>    mac_s = HMAC-SHA256(secret, "server" nonce_c nonce_s)
//! → rc auth <mac_c>                   mac_c = HMAC-SHA256(secret, "client" nonce_s nonce_c)
//! ← OK
//! ```
//!
//! Nonces are [`NONCE_BYTES`] random bytes and MACs 32 bytes, both in lowercase
//! hex; the MACs cover the raw nonce bytes. Each side checks the other's MAC
//! (in constant time), so neither talks to a node holding another secret, and
//! a recorded exchange replays on no other connection (the other side's nonce
//! is new). A wrong `rc auth` is answered [`AUTH_REFUSED`] and the connection
//! closes. After the `OK`, both sides send everything in frames that carry a
//! MAC under keys of this connection ([`super::seal`]).

use super::seal::{End, Sealing};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Fewest bytes a cluster secret may hold.
pub const SECRET_BYTES_MIN: usize = 32;
/// Longest cluster secret file, in bytes of text.
pub const SECRET_TEXT_LEN_MAX: usize = 248;
/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 16;
/// Bytes of an HMAC-SHA256.
pub const MAC_BYTES: usize = 32;
/// Longest handshake line either side sends (`rc challenge` is the longest).
pub const AUTH_LINE_LEN_MAX: usize = 256;
/// Longest `<who>` in `rc hello`.
pub const WHO_LEN_MAX: usize = 32;

/// The name of the secret file `--init` creates in the data directory.
pub const SECRET_FILE_NAME: &str = "cluster.secret";

/// The answer to an `rc auth` whose MAC is wrong (or that no `rc hello` came before).
pub const AUTH_REFUSED: &[u8] = b"CLIENT_ERROR authentication failed\r\n";
/// The answer to a good `rc auth`.
pub const AUTH_OK: &[u8] = b"OK\r\n";

/// How an operator makes a secret by hand (in error messages and the README).
pub const HOW_TO_MAKE_ONE: &str = "head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE";

type HmacSha256 = Hmac<Sha256>;

/// The cluster secret: at least [`SECRET_BYTES_MIN`] bytes. Its `Debug` does not
/// show them.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Reads a secret file's text: hex (an even number of hex digits) or base64,
    /// surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let text = text.trim();
        if text.len() > SECRET_TEXT_LEN_MAX {
            return Err(format!(
                "longer than {SECRET_TEXT_LEN_MAX} characters: write {SECRET_BYTES_MIN} to 128 bytes in hex or base64"
            ));
        }
        let bytes = if text.len().is_multiple_of(2) && text.bytes().all(|c| c.is_ascii_hexdigit()) {
            hex_decode(text).ok_or("not hex")?
        } else if text
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=\r\n ".contains(&c))
        {
            use base64::Engine as _;
            // `base64` wraps its output in lines; the breaks are not the secret.
            let unwrapped: Vec<u8> = text.bytes().filter(|c| !b"\r\n ".contains(c)).collect();
            base64::engine::general_purpose::STANDARD
                .decode(unwrapped)
                .map_err(|e| format!("not base64: {e}"))?
        } else {
            return Err("neither hex nor base64".into());
        };
        if bytes.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "{} bytes: a cluster secret needs at least {SECRET_BYTES_MIN} random bytes, in hex or base64",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// A secret of these bytes (at least [`SECRET_BYTES_MIN`]).
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        assert!(bytes.len() >= SECRET_BYTES_MIN, "a short cluster secret");
        Secret(bytes.to_vec())
    }

    /// The text of a secret file holding these bytes: hex, one line.
    pub fn file_text(&self) -> String {
        let mut text = hex(&self.0);
        text.push('\n');
        text
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }

    /// A key derived from the secret for one connection: HMAC(secret, label
    /// nonce_c nonce_s) (see `super::seal`).
    pub fn derive(
        &self,
        label: &[u8],
        nonce_c: &[u8; NONCE_BYTES],
        nonce_s: &[u8; NONCE_BYTES],
    ) -> [u8; MAC_BYTES] {
        self.mac(label, nonce_c, nonce_s)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The server's proof: HMAC(secret, "server" nonce_c nonce_s).
    pub fn server_mac(&self, nonce_c: &[u8], nonce_s: &[u8]) -> [u8; MAC_BYTES] {
        self.mac(b"server", nonce_c, nonce_s)
            .finalize()
            .into_bytes()
            .into()
    }

    /// The client's proof: HMAC(secret, "client" nonce_s nonce_c).
    pub fn client_mac(&self, nonce_s: &[u8], nonce_c: &[u8]) -> [u8; MAC_BYTES] {
        self.mac(b"client", nonce_s, nonce_c)
            .finalize()
            .into_bytes()
            .into()
    }

    /// Whether `mac` is the server's proof, compared in constant time.
    pub fn verify_server(&self, nonce_c: &[u8], nonce_s: &[u8], mac: &[u8]) -> bool {
        self.mac(b"server", nonce_c, nonce_s)
            .verify_slice(mac)
            .is_ok()
    }

    /// Whether `mac` is the client's proof, compared in constant time.
    pub fn verify_client(&self, nonce_s: &[u8], nonce_c: &[u8], mac: &[u8]) -> bool {
        self.mac(b"client", nonce_s, nonce_c)
            .verify_slice(mac)
            .is_ok()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(text, "{b:02x}");
    }
    text
}

/// Hex to bytes; `None` unless every pair is two hex digits.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One handshake line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthLine {
    /// `rc hello <who> <nonce_c>`
    Hello {
        who: String,
        nonce: [u8; NONCE_BYTES],
    },
    /// `rc challenge <nonce_s> <mac_s>`
    Challenge {
        nonce: [u8; NONCE_BYTES],
        mac: [u8; MAC_BYTES],
    },
    /// `rc auth <mac_c>`
    Auth { mac: [u8; MAC_BYTES] },
}

/// Whether a line (with or without its end) is a handshake line, by its first words.
pub fn is_auth_line(line: &[u8]) -> bool {
    line.starts_with(b"rc hello ") || line.starts_with(b"rc auth ")
}

fn fixed<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex_decode(text)?.try_into().ok()
}

/// Parses one handshake line (without its `\r\n`); `None` if it is not a
/// well-formed one.
pub fn parse_auth_line(line: &[u8]) -> Option<AuthLine> {
    let text = std::str::from_utf8(line).ok()?;
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    match words.as_slice() {
        ["rc", "hello", who, nonce]
            if who.len() <= WHO_LEN_MAX && who.bytes().all(|c| c.is_ascii_graphic()) =>
        {
            Some(AuthLine::Hello {
                who: (*who).to_string(),
                nonce: fixed(nonce)?,
            })
        }
        ["rc", "challenge", nonce, mac] => Some(AuthLine::Challenge {
            nonce: fixed(nonce)?,
            mac: fixed(mac)?,
        }),
        ["rc", "auth", mac] => Some(AuthLine::Auth { mac: fixed(mac)? }),
        _ => None,
    }
}

/// Writes `rc hello <who> <nonce_c>\r\n`.
pub fn encode_hello(who: &str, nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    format!("rc hello {who} {}\r\n", hex(nonce)).into_bytes()
}

/// Writes `rc challenge <nonce_s> <mac_s>\r\n` for a client's `nonce_c`.
pub fn encode_challenge(
    secret: &Secret,
    nonce_c: &[u8; NONCE_BYTES],
    nonce_s: &[u8; NONCE_BYTES],
) -> Vec<u8> {
    let mac = secret.server_mac(nonce_c, nonce_s);
    format!("rc challenge {} {}\r\n", hex(nonce_s), hex(&mac)).into_bytes()
}

/// Why a handshake failed, seen from the side that opened the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The other side proved a different secret (or none).
    WrongSecret,
    /// The other side refused this side's proof: it holds another secret.
    Refused,
    /// The other side answered something that is no handshake (it may be no
    /// ringcache node, or one that is not in a cluster).
    NotAMember(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::WrongSecret => {
                write!(
                    f,
                    "it does not know this cluster's secret (a different --cluster-secret?)"
                )
            }
            HandshakeError::Refused => {
                write!(f, "it refused this node's proof of the cluster secret (a different --cluster-secret?)")
            }
            HandshakeError::NotAMember(reply) => {
                write!(
                    f,
                    "it answered the handshake with {reply:?}: not a member of a cluster"
                )
            }
        }
    }
}

/// The opening side of a handshake, between its lines.
pub struct ClientHandshake {
    nonce: [u8; NONCE_BYTES],
    /// The server's nonce, once its challenge is checked.
    nonce_s: Option<[u8; NONCE_BYTES]>,
}

impl ClientHandshake {
    /// Starts a handshake with a fresh random `nonce`: returns it and the
    /// `rc hello` line to send.
    pub fn start(who: &str, nonce: [u8; NONCE_BYTES]) -> (ClientHandshake, Vec<u8>) {
        (
            ClientHandshake {
                nonce,
                nonce_s: None,
            },
            encode_hello(who, &nonce),
        )
    }

    /// Checks the server's `rc challenge` line (without its `\r\n`); returns
    /// the `rc auth` line to send.
    pub fn on_challenge(
        &mut self,
        secret: &Secret,
        line: &[u8],
    ) -> Result<Vec<u8>, HandshakeError> {
        let Some(AuthLine::Challenge { nonce, mac }) = parse_auth_line(line) else {
            return Err(HandshakeError::NotAMember(
                String::from_utf8_lossy(line).into_owned(),
            ));
        };
        if !secret.verify_server(&self.nonce, &nonce, &mac) {
            return Err(HandshakeError::WrongSecret);
        }
        let proof = secret.client_mac(&nonce, &self.nonce);
        self.nonce_s = Some(nonce);
        Ok(format!("rc auth {}\r\n", hex(&proof)).into_bytes())
    }

    /// Checks the server's answer to `rc auth` (a line with its `\r\n`);
    /// returns the frame keys of everything after it.
    pub fn on_answer(&self, secret: &Secret, line: &[u8]) -> Result<Sealing, HandshakeError> {
        if let (true, Some(nonce_s)) = (line == AUTH_OK, self.nonce_s) {
            Ok(Sealing::new(secret, &self.nonce, &nonce_s, End::Client))
        } else if line == AUTH_REFUSED {
            Err(HandshakeError::Refused)
        } else {
            Err(HandshakeError::NotAMember(
                String::from_utf8_lossy(line).trim_end().to_string(),
            ))
        }
    }
}

/// Where a connection stands, on the accepting side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Has not proved it knows the secret: its `rc` lines are answered `ERROR`.
    Stranger,
    /// Sent `rc hello` and was challenged.
    Challenged {
        who: String,
        nonce_c: [u8; NONCE_BYTES],
        nonce_s: [u8; NONCE_BYTES],
    },
    /// Proved it: a member (or an admin) of the cluster.
    Member,
}

/// What the accepting side does with a handshake line.
pub enum ServerStep {
    /// Send this and go on.
    Answer(Vec<u8>),
    /// Send [`AUTH_OK`]: the connection is a member's, and everything after
    /// that line travels in frames sealed with these keys.
    Welcome(Box<Sealing>),
    /// Send [`AUTH_REFUSED`] and close; `who` tried.
    Refuse { who: String },
}

/// The accepting side's step for one handshake `line` (without `\r\n`):
/// `nonce_s` is a fresh random nonce, used if the line is an `rc hello`.
pub fn server_step(
    secret: &Secret,
    standing: &mut Standing,
    line: &[u8],
    nonce_s: [u8; NONCE_BYTES],
) -> ServerStep {
    match parse_auth_line(line) {
        Some(AuthLine::Hello { who, nonce }) => {
            let answer = encode_challenge(secret, &nonce, &nonce_s);
            *standing = Standing::Challenged {
                who,
                nonce_c: nonce,
                nonce_s,
            };
            ServerStep::Answer(answer)
        }
        Some(AuthLine::Auth { mac }) => {
            let previous = std::mem::replace(standing, Standing::Stranger);
            match previous {
                Standing::Challenged {
                    who,
                    nonce_c,
                    nonce_s,
                } => {
                    if secret.verify_client(&nonce_s, &nonce_c, &mac) {
                        *standing = Standing::Member;
                        ServerStep::Welcome(Box::new(Sealing::new(
                            secret,
                            &nonce_c,
                            &nonce_s,
                            End::Server,
                        )))
                    } else {
                        ServerStep::Refuse { who }
                    }
                }
                _ => ServerStep::Refuse {
                    who: "(no hello)".into(),
                },
            }
        }
        _ => {
            *standing = Standing::Stranger;
            ServerStep::Refuse {
                who: "(a malformed handshake)".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: u8) -> Secret {
        Secret::from_bytes(&[fill; SECRET_BYTES_MIN])
    }

    #[test]
    fn a_secret_reads_as_hex_or_base64_and_needs_32_bytes() {
        let hex_text = "ab".repeat(32);
        assert_eq!(Secret::parse(&format!("{hex_text}\n")), Ok(secret(0xab)));
        let mut b64 = Vec::new();
        crate::protocol::meta::base64_encode(&[7u8; 32], &mut b64);
        let b64 = String::from_utf8(b64).unwrap();
        assert_eq!(Secret::parse(&b64), Ok(secret(7)));
        assert!(Secret::parse(&"ab".repeat(31)).is_err());
        assert!(Secret::parse("").is_err());
        assert!(Secret::parse("not a secret at all!").is_err());
        assert_eq!(Secret::parse(&secret(9).file_text()), Ok(secret(9)));
    }

    #[test]
    fn a_handshake_between_holders_of_one_secret_makes_a_member() {
        let (mut client, hello) = ClientHandshake::start("3", [1; NONCE_BYTES]);
        let mut standing = Standing::Stranger;
        let s = secret(5);
        let ServerStep::Answer(challenge) = server_step(
            &s,
            &mut standing,
            &hello[..hello.len() - 2],
            [2; NONCE_BYTES],
        ) else {
            panic!("hello refused");
        };
        let auth = client
            .on_challenge(&s, &challenge[..challenge.len() - 2])
            .expect("the server knows the secret");
        let step = server_step(&s, &mut standing, &auth[..auth.len() - 2], [3; NONCE_BYTES]);
        let ServerStep::Welcome(mut server) = step else {
            panic!("a good proof refused");
        };
        assert_eq!(standing, Standing::Member);
        // Both sides now hold the same frame keys.
        let mut client = client.on_answer(&s, AUTH_OK).expect("welcomed");
        let mut frame = Vec::new();
        client.send.seal(b"rc show\r\n", &mut frame);
        assert!(server.receive.open(&frame).is_ok());
        assert!(matches!(
            ClientHandshake::start("3", [1; NONCE_BYTES])
                .0
                .on_answer(&s, AUTH_OK),
            Err(HandshakeError::NotAMember(_))
        ));
    }

    #[test]
    fn a_handshake_across_two_secrets_fails_on_both_sides() {
        let (mut client, hello) = ClientHandshake::start("admin", [1; NONCE_BYTES]);
        let mut standing = Standing::Stranger;
        let ServerStep::Answer(challenge) = server_step(
            &secret(5),
            &mut standing,
            &hello[..hello.len() - 2],
            [2; NONCE_BYTES],
        ) else {
            panic!("hello refused");
        };
        let line = &challenge[..challenge.len() - 2];
        assert_eq!(
            client.on_challenge(&secret(6), line),
            Err(HandshakeError::WrongSecret)
        );
        // A client that goes on anyway (or replays another connection's proof) is refused.
        let forged = ClientHandshake {
            nonce: [1; NONCE_BYTES],
            nonce_s: None,
        }
        .on_challenge(&secret(5), line)
        .map(|_| {
            format!(
                "rc auth {}",
                hex(&secret(6).client_mac(&[2; NONCE_BYTES], &[1; NONCE_BYTES]))
            )
        })
        .unwrap();
        let step = server_step(
            &secret(5),
            &mut standing,
            forged.as_bytes(),
            [3; NONCE_BYTES],
        );
        assert!(matches!(step, ServerStep::Refuse { who } if who == "admin"));
        assert_eq!(standing, Standing::Stranger);
    }

    #[test]
    fn an_auth_without_a_hello_or_malformed_is_refused() {
        let mut standing = Standing::Stranger;
        let line = format!("rc auth {}", hex(&[0; MAC_BYTES]));
        assert!(matches!(
            server_step(&secret(1), &mut standing, line.as_bytes(), [0; NONCE_BYTES]),
            ServerStep::Refuse { .. }
        ));
        assert!(matches!(
            server_step(
                &secret(1),
                &mut standing,
                b"rc hello 1 zz",
                [0; NONCE_BYTES]
            ),
            ServerStep::Refuse { .. }
        ));
        assert_eq!(standing, Standing::Stranger);
    }
}
