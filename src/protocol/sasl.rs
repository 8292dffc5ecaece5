//! memcached's binary SASL (`-S`), with the PLAIN mechanism (pure): what a
//! binary connection that has not authenticated may send, and the answers,
//! as memcached 1.6 gives them.
//!
//! Before a connection authenticates it may list the mechanisms, authenticate
//! and ask the version; anything else is answered `Auth failure.` (status
//! 0x20) and the connection closes. PLAIN's data is
//! `[authzid] NUL authcid NUL password`; the user and password are checked
//! against the password file (`user:password` lines, memcached's
//! `MEMCACHED_SASL_PWDB`). A right one is answered `Authenticated`; a wrong
//! one, another mechanism or a `SASL_STEP` `Auth failure.`, and the
//! connection may try again.
//!
//! ```text
//! → 0x20 SASL_LIST_MECHS            ← "PLAIN"
//! → 0x21 SASL_AUTH key "PLAIN" value "\0alice\0wonderland"
//!                                   ← "Authenticated"      (status 0)
//!                                   ← "Auth failure."      (status 0x20)
//! ```

use super::ascii_auth::AuthFile;
use super::binary::{
    opcode, write_error, write_simple, Header, Status, HEADER_BYTES, REQUEST_MAGIC,
};

/// The one mechanism served.
pub const MECHANISMS: &[u8] = b"PLAIN";
/// Longest mechanism name memcached reads (`MAX_SASL_MECH_LEN`).
pub const MECH_LEN_MAX: usize = 32;
/// Largest body of a request before authentication: a mechanism and PLAIN's
/// data. A longer one closes the connection unread.
pub const SASL_BODY_BYTES_MAX: usize = 4096;

/// What to do with the bytes of a binary connection that has not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a whole request yet.
    Incomplete,
    /// Send `reply` (possibly nothing) and close the connection.
    Close { reply: Vec<u8> },
    /// Send `reply`, consume `used` bytes and go on; `authenticated` when the
    /// credentials were right.
    Answer {
        reply: Vec<u8>,
        used: usize,
        authenticated: bool,
    },
}

/// The answer to the request at the start of `buf`; `version` is what
/// `VERSION` answers.
pub fn step(buf: &[u8], users: &AuthFile, version: &[u8]) -> Step {
    let Some(head) = buf.first_chunk::<HEADER_BYTES>() else {
        return Step::Incomplete;
    };
    if head[0] != REQUEST_MAGIC {
        // As memcached: a packet with another magic closes the connection.
        return Step::Close { reply: Vec::new() };
    }
    let header = Header {
        opcode: head[1],
        opaque: u32::from_be_bytes([head[12], head[13], head[14], head[15]]),
        cas: 0,
    };
    let key_len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let extras_len = usize::from(head[4]);
    let body_len = u32::from_be_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let mut reply = Vec::new();
    let allowed = matches!(
        header.opcode,
        opcode::SASL_LIST_MECHS | opcode::SASL_AUTH | opcode::SASL_STEP | opcode::VERSION
    );
    if !allowed {
        write_error(&mut reply, &header, Status::AuthError);
        return Step::Close { reply };
    }
    let malformed = match header.opcode {
        opcode::SASL_AUTH | opcode::SASL_STEP => {
            extras_len != 0 || key_len == 0 || key_len > body_len
        }
        _ => extras_len != 0 || key_len != 0 || body_len != 0,
    };
    if malformed || body_len > SASL_BODY_BYTES_MAX {
        write_error(&mut reply, &header, Status::InvalidArguments);
        return Step::Close { reply };
    }
    let used = HEADER_BYTES + body_len;
    if buf.len() < used {
        return Step::Incomplete;
    }
    let mut authenticated = false;
    match header.opcode {
        opcode::VERSION => write_simple(&mut reply, &header, Status::Success, 0, version),
        opcode::SASL_LIST_MECHS => {
            write_simple(&mut reply, &header, Status::Success, 0, MECHANISMS)
        }
        _ if key_len > MECH_LEN_MAX => write_error(&mut reply, &header, Status::InvalidArguments),
        _ => {
            let mech = &buf[HEADER_BYTES..HEADER_BYTES + key_len];
            let data = &buf[HEADER_BYTES + key_len..used];
            authenticated = header.opcode == opcode::SASL_AUTH
                && mech == MECHANISMS
                && plain_credentials(data)
                    .is_some_and(|(user, password)| users.check(user, password));
            if authenticated {
                write_simple(&mut reply, &header, Status::Success, 0, b"Authenticated");
            } else {
                write_error(&mut reply, &header, Status::AuthError);
            }
        }
    }
    Step::Answer {
        reply,
        used,
        authenticated,
    }
}

/// PLAIN's user and password: `[authzid] NUL authcid NUL password`, the
/// authorization id empty or the user itself.
fn plain_credentials(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = data.splitn(3, |&b| b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    (authzid.is_empty() || authzid == user).then_some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> AuthFile {
        AuthFile::parse(b"alice:wonderland\n").unwrap()
    }

    fn packet(op: u8, key: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
        let mut p = vec![REQUEST_MAGIC, op];
        p.extend_from_slice(&(key.len() as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&((key.len() + value.len()) as u32).to_be_bytes());
        p.extend_from_slice(&opaque.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        p.extend_from_slice(key);
        p.extend_from_slice(value);
        p
    }

    /// The status and body of a response.
    fn status_and_body(reply: &[u8]) -> (u16, &[u8]) {
        (
            u16::from_be_bytes([reply[6], reply[7]]),
            &reply[HEADER_BYTES..],
        )
    }

    fn answer(buf: &[u8]) -> (u16, Vec<u8>, usize, bool) {
        match step(buf, &users(), b"1.6.18") {
            Step::Answer {
                reply,
                used,
                authenticated,
            } => {
                let (status, body) = status_and_body(&reply);
                (status, body.to_vec(), used, authenticated)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_mechanisms_and_the_version_are_answered_before_authentication() {
        let list = packet(opcode::SASL_LIST_MECHS, b"", b"", 7);
        assert_eq!(answer(&list), (0, b"PLAIN".to_vec(), HEADER_BYTES, false));
        let version = packet(opcode::VERSION, b"", b"", 8);
        assert_eq!(
            answer(&version),
            (0, b"1.6.18".to_vec(), HEADER_BYTES, false)
        );
    }

    #[test]
    fn plain_with_the_right_password_authenticates_and_a_wrong_one_may_try_again() {
        let right = packet(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0wonderland", 1);
        assert_eq!(
            answer(&right),
            (0, b"Authenticated".to_vec(), right.len(), true)
        );
        let with_authzid = packet(opcode::SASL_AUTH, b"PLAIN", b"alice\0alice\0wonderland", 1);
        assert!(answer(&with_authzid).3);
        for (mech, data) in [
            (&b"PLAIN"[..], &b"\0alice\0looking-glass"[..]),
            (b"PLAIN", b"\0bob\0wonderland"),
            (b"PLAIN", b"bob\0alice\0wonderland"),
            (b"PLAIN", b"alice wonderland"),
            (b"CRAM-MD5", b"\0alice\0wonderland"),
        ] {
            let p = packet(opcode::SASL_AUTH, mech, data, 1);
            assert_eq!(
                answer(&p),
                (0x20, b"Auth failure.".to_vec(), p.len(), false)
            );
        }
        let step_first = packet(opcode::SASL_STEP, b"PLAIN", b"\0alice\0wonderland", 1);
        assert_eq!(answer(&step_first).0, 0x20);
    }

    #[test]
    fn any_other_command_is_refused_and_closes_and_a_request_is_incomplete_until_whole() {
        let get = packet(opcode::GET, b"k", b"", 9);
        let Step::Close { reply } = step(&get, &users(), b"") else {
            panic!("a get before authentication was not refused");
        };
        assert_eq!(status_and_body(&reply), (0x20, &b"Auth failure."[..]));
        assert_eq!(&reply[12..16], &9u32.to_be_bytes(), "the opaque is echoed");
        let auth = packet(opcode::SASL_AUTH, b"PLAIN", b"\0alice\0wonderland", 1);
        for cut in 0..auth.len() {
            assert_eq!(
                step(&auth[..cut], &users(), b""),
                Step::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(
            step(b"get k\r\n                        ", &users(), b""),
            Step::Close { reply: Vec::new() }
        );
    }

    #[test]
    fn a_body_past_the_bound_or_a_malformed_request_closes() {
        let long = packet(opcode::SASL_AUTH, b"PLAIN", &[0; SASL_BODY_BYTES_MAX], 1);
        assert!(matches!(
            step(&long[..HEADER_BYTES], &users(), b""),
            Step::Close { .. }
        ));
        let at_bound = packet(
            opcode::SASL_AUTH,
            b"PLAIN",
            &[0; SASL_BODY_BYTES_MAX - 5],
            1,
        );
        assert!(matches!(
            step(&at_bound, &users(), b""),
            Step::Answer { .. }
        ));
        let no_mech = packet(opcode::SASL_AUTH, b"", b"\0alice\0wonderland", 1);
        assert!(matches!(step(&no_mech, &users(), b""), Step::Close { .. }));
        let long_mech = packet(opcode::SASL_AUTH, &[b'M'; MECH_LEN_MAX + 1], b"", 1);
        assert_eq!(answer(&long_mech).0, 0x04);
    }
}
