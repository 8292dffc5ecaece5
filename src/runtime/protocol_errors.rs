//! The log line (at debug, `-vv`) for a request a client sent that breaks the
//! protocol: one line per malformed request, naming the client, the start of
//! what it sent and what it was answered, as memcached logs them at `-vv`. At
//! the default verbosity nothing is formatted. Does no I/O beyond the log.
//!
//! Bottom layer: imports nothing else of `runtime`.

/// The most bytes of a malformed request the line quotes.
const QUOTED_LEN_MAX: usize = 80;

/// A text request the parser refused: `request` is what it consumed, `reply`
/// what the client is answered (empty when memcached answers nothing).
pub(super) fn text(peer: &str, request: &[u8], reply: &[u8]) {
    if log::log_enabled!(log::Level::Debug) {
        let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let answer = reply.strip_suffix(b"\r\n").unwrap_or(reply);
        log::debug!(
            "client {peer}: protocol error: \"{}\" answered \"{}\"",
            quoted(line),
            quoted(answer)
        );
    }
}

/// A text line with no end within the line limit: the connection is closed.
pub(super) fn line_too_long(peer: &str) {
    log::debug!("client {peer}: protocol error: a line with no end within the limit; closing");
}

/// An HTTP request on the memcached port: the connection is closed, unanswered.
pub(super) fn http(peer: &str) {
    log::debug!("client {peer}: protocol error: an HTTP request; closing");
}

/// A binary packet that cannot be served: `what` says why; the connection is closed.
pub(super) fn binary(what: &str) {
    log::debug!("binary client: protocol error: {what}; closing");
}

/// The first bytes of `bytes`, with anything unprintable escaped.
fn quoted(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(QUOTED_LEN_MAX)];
    let mut text = shown.escape_ascii().to_string();
    if bytes.len() > QUOTED_LEN_MAX {
        text.push_str("...");
    }
    text
}
