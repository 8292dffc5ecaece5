//! Members only, the I/O half (see `cluster::auth` for the handshake itself):
//! reading, checking and creating the cluster secret file, random nonces, and
//! the handshake that opens every connection this node (or an admin) makes to
//! another node, on blocking and on glommio sockets (does I/O).
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::cluster::auth::{
    ClientHandshake, HandshakeError, Secret, AUTH_LINE_LEN_MAX, HOW_TO_MAKE_ONE, NONCE_BYTES,
    SECRET_BYTES_MIN, SECRET_FILE_NAME, SECRET_TEXT_LEN_MAX,
};
use crate::cluster::seal::Sealing;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Reads the cluster secret at `path`, refusing a file that group or others
/// may read (as ssh refuses such a private key).
pub fn load_secret(path: &Path) -> Result<Secret, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the cluster secret {shown}: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "the cluster secret {shown} is readable by others (mode {mode:03o}); \
             make it private with `chmod 600 {shown}` and start again"
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(SECRET_TEXT_LEN_MAX as u64 + 2)
                .read_to_string(&mut text)
        })
        .map_err(|e| format!("cannot read the cluster secret {shown}: {e}"))?;
    Secret::parse(&text)
        .map_err(|e| format!("the cluster secret {shown}: {e} (make one with `{HOW_TO_MAKE_ONE}`)"))
}

/// `--init`: creates `<dir>/cluster.secret` (mode 0600) holding
/// [`SECRET_BYTES_MIN`] random bytes, unless it exists; returns its path.
pub fn create_secret(dir: &Path) -> Result<PathBuf, String> {
    let path = dir.join(SECRET_FILE_NAME);
    if path.exists() {
        return Ok(path);
    }
    let bytes: [u8; SECRET_BYTES_MIN] =
        random_bytes().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(Secret::from_bytes(&bytes).file_text().as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| format!("cannot create the cluster secret {}: {e}", path.display()))?;
    log::warn!(
        "created the cluster secret {}: every node that joins this cluster, and `ringcache cluster`, \
         needs a copy of it (mode 0600, in its --data-dir or named by --cluster-secret)",
        path.display()
    );
    Ok(path)
}

/// Why a handshake this side opened failed.
#[derive(Debug)]
pub enum AuthFailure {
    /// The connection failed, or timed out, or the line was too long.
    Io(std::io::Error),
    /// The other side is no member of this cluster.
    Handshake(HandshakeError),
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthFailure::Io(e) => write!(f, "{e}"),
            AuthFailure::Handshake(e) => write!(f, "{e}"),
        }
    }
}

fn nonce() -> Result<[u8; NONCE_BYTES], AuthFailure> {
    random_bytes().map_err(AuthFailure::Io)
}

/// The handshake on a blocking socket (its timeouts set by the caller); `who`
/// is this node's id or `admin`. Returns the keys that seal everything after
/// it (wrap the socket in `sealed::Sealed`).
pub fn handshake_blocking<S: Read + Write>(
    stream: &mut S,
    secret: &Secret,
    who: &str,
) -> Result<Sealing, AuthFailure> {
    let (mut client, hello) = ClientHandshake::start(who, nonce()?);
    stream.write_all(&hello).map_err(AuthFailure::Io)?;
    let challenge = read_line_blocking(stream)?;
    let auth = client
        .on_challenge(secret, trim_end(&challenge))
        .map_err(AuthFailure::Handshake)?;
    stream.write_all(&auth).map_err(AuthFailure::Io)?;
    let answer = read_line_blocking(stream)?;
    client
        .on_answer(secret, &answer)
        .map_err(AuthFailure::Handshake)
}

/// The handshake on a glommio socket; see [`handshake_blocking`]. The caller
/// bounds the time it takes.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &Secret,
    who: &str,
) -> Result<Sealing, AuthFailure> {
    let (mut client, hello) = ClientHandshake::start(who, nonce()?);
    stream.write_all(&hello).await.map_err(AuthFailure::Io)?;
    let challenge = read_line(stream).await?;
    let auth = client
        .on_challenge(secret, trim_end(&challenge))
        .map_err(AuthFailure::Handshake)?;
    stream.write_all(&auth).await.map_err(AuthFailure::Io)?;
    let answer = read_line(stream).await?;
    client
        .on_answer(secret, &answer)
        .map_err(AuthFailure::Handshake)
}

fn trim_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Reads one line. The other side sends nothing after it until this side
/// speaks again, so bytes past its end mean the other side is no member.
fn read_line_blocking<S: Read>(stream: &mut S) -> Result<Vec<u8>, AuthFailure> {
    let mut line = Vec::new();
    let mut chunk = [0u8; AUTH_LINE_LEN_MAX];
    while !line.ends_with(b"\n") {
        match stream.read(&mut chunk).map_err(AuthFailure::Io)? {
            0 => return Err(AuthFailure::Io(std::io::ErrorKind::UnexpectedEof.into())),
            n => line.extend_from_slice(&chunk[..n]),
        }
        check_line(&line)?;
    }
    Ok(line)
}

async fn read_line<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, AuthFailure> {
    let mut line = Vec::new();
    let mut chunk = [0u8; AUTH_LINE_LEN_MAX];
    while !line.ends_with(b"\n") {
        match stream.read(&mut chunk).await.map_err(AuthFailure::Io)? {
            0 => return Err(AuthFailure::Io(std::io::ErrorKind::UnexpectedEof.into())),
            n => line.extend_from_slice(&chunk[..n]),
        }
        check_line(&line)?;
    }
    Ok(line)
}

/// A handshake line is short and alone: a longer one, or bytes after its end,
/// come from something that is no member.
fn check_line(line: &[u8]) -> Result<(), AuthFailure> {
    let end = memchr::memchr(b'\n', line);
    if line.len() > AUTH_LINE_LEN_MAX || end.is_some_and(|nl| nl + 1 != line.len()) {
        return Err(AuthFailure::Handshake(HandshakeError::NotAMember(
            String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned(),
        )));
    }
    Ok(())
}
