//! memcached's ASCII authentication (`-Y FILE`), pure: the auth file's users and
//! what a connection that has not authenticated yet is answered.
//!
//! # Format
//!
//! The file holds one `user:password` a line (split at the first `:`). A
//! connection authenticates by storing a value that is its user and password:
//!
//! ```text
//! set <any key> <any flags> <any exptime> <len>\r\n<user> <password>\r\n
//! ```
//!
//! Until it has, every other command is answered `CLIENT_ERROR unauthenticated`
//! and nothing runs. The answers are memcached 1.6.18's, byte for byte
//! (tests/ascii_auth.rs compares them with `memcached -Y`).

use crate::limits::LINE_LEN_MAX;

/// The reply to any command before authentication.
pub const UNAUTHENTICATED: &[u8] = b"CLIENT_ERROR unauthenticated\r\n";
/// The reply to a token naming no user with that password.
pub const FAILED: &[u8] = b"CLIENT_ERROR authentication failure\r\n";
/// The reply to a token that is not two words.
pub const BAD_FORMAT: &[u8] = b"CLIENT_ERROR bad authentication token format\r\n";
/// The reply to a token whose data block does not end in `\r\n`.
pub const BAD_CHUNK: &[u8] = b"CLIENT_ERROR bad data chunk\r\n";
/// The reply that authenticates.
pub const STORED: &[u8] = b"STORED\r\n";

/// Longest token read; a longer one fails without being looked at (its data
/// block is skipped).
pub const TOKEN_LEN_MAX: usize = 8192;

/// The users of an auth file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthFile {
    users: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AuthFile {
    /// Reads the file's text: one `user:password` a line; blank lines are
    /// skipped, a line without `:` is an error (as memcached refuses to start).
    pub fn parse(text: &[u8]) -> Result<AuthFile, String> {
        let mut users = Vec::new();
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let colon = memchr::memchr(b':', line)
                .ok_or_else(|| format!("line {}: not user:password", n + 1))?;
            users.push((line[..colon].to_vec(), line[colon + 1..].to_vec()));
        }
        if users.is_empty() {
            return Err("no user:password line in it".into());
        }
        Ok(AuthFile { users })
    }

    /// Whether `user` has `password`, in time that does not depend on where
    /// the bytes differ.
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let mut found = false;
        for (u, p) in &self.users {
            found |= same_bytes(u, user) & same_bytes(p, password);
        }
        found
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What to do with the bytes of a connection that has not authenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not a whole request yet.
    Incomplete,
    /// A line longer than any request: memcached closes the connection.
    Close,
    /// Answer `reply`, consume `used` bytes and skip `swallow` more as they
    /// arrive; `authenticated` when the token was right.
    Answer {
        reply: &'static [u8],
        used: usize,
        swallow: usize,
        authenticated: bool,
    },
}

/// The answer to the request at the start of `buf` before authentication.
pub fn step(buf: &[u8], users: &AuthFile) -> Step {
    let Some(newline) = memchr::memchr(b'\n', buf) else {
        return if buf.len() > LINE_LEN_MAX {
            Step::Close
        } else {
            Step::Incomplete
        };
    };
    let line_len = newline + 1;
    let line = buf[..newline]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..newline]);
    let words: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .collect();
    let unauthenticated = Step::Answer {
        reply: UNAUTHENTICATED,
        used: line_len,
        swallow: 0,
        authenticated: false,
    };
    if words.len() < 5 || words[0] != b"set" {
        return unauthenticated;
    }
    let Some(len) = std::str::from_utf8(words[4])
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
    else {
        return unauthenticated;
    };
    let block = len.saturating_add(2);
    if len > TOKEN_LEN_MAX {
        return Step::Answer {
            reply: FAILED,
            used: line_len,
            swallow: block,
            authenticated: false,
        };
    }
    let Some(data) = buf.get(line_len..line_len + block) else {
        return Step::Incomplete;
    };
    let answer = |reply, authenticated| Step::Answer {
        reply,
        used: line_len + block,
        swallow: 0,
        authenticated,
    };
    if &data[len..] != b"\r\n" {
        return answer(BAD_CHUNK, false);
    }
    let mut token = data[..len].split(|&b| b == b' ').filter(|w| !w.is_empty());
    match (token.next(), token.next()) {
        (Some(user), Some(password)) if users.check(user, password) => answer(STORED, true),
        (Some(_), Some(_)) => answer(FAILED, false),
        _ => answer(BAD_FORMAT, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> AuthFile {
        AuthFile::parse(b"alice:secret\nbob:pw:2\n\n").unwrap()
    }

    #[test]
    fn the_file_is_user_colon_password_lines() {
        let u = users();
        assert!(u.check(b"alice", b"secret") && u.check(b"bob", b"pw:2"));
        assert!(!u.check(b"alice", b"secre") && !u.check(b"alic", b"secret"));
        assert!(AuthFile::parse(b"alice\n").is_err());
        assert!(AuthFile::parse(b"\n").is_err());
    }

    #[test]
    fn only_a_set_whose_data_is_a_right_token_authenticates() {
        let u = users();
        let answer = |buf: &[u8]| match step(buf, &u) {
            Step::Answer {
                reply,
                used,
                authenticated,
                ..
            } => (reply, used, authenticated),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            answer(b"set k 0 0 12\r\nalice secret\r\nget k\r\n"),
            (STORED, 28, true)
        );
        assert_eq!(answer(b"get k\r\n"), (UNAUTHENTICATED, 7, false));
        assert_eq!(answer(b"set k 0 0 x\r\n"), (UNAUTHENTICATED, 13, false));
        assert_eq!(answer(b"set k 0 0 12\r\nalice wrongg\r\n").0, FAILED);
        assert_eq!(answer(b"set k 0 0 5\r\nalice\r\n").0, BAD_FORMAT);
        assert_eq!(answer(b"set k 0 0 5\r\nalice\r\r").0, BAD_CHUNK);
        assert_eq!(step(b"set k 0 0 12\r\nalice", &u), Step::Incomplete);
        assert_eq!(step(b"set k 0", &u), Step::Incomplete);
        assert_eq!(step(&[b'x'; LINE_LEN_MAX + 1], &u), Step::Close);
    }
}
