//! One client connection: read, parse, route each request to the shard that owns
//! its key, put the replies back in request order, and write them with one call.
//!
//! Requests for this shard's keys run inline; those for other shards are batched,
//! one message per destination shard per read, and their replies are spliced in
//! where they belong.
//!
//! - [`serve`](serve()): the read loop, which does the socket I/O;
//! - `text`: the text and meta request loop; `binary`: the binary protocol's;
//! - `routing`: where a keyed request runs;
//! - `output`: the replies of one read, in request order, and the batches for
//!   other shards;
//! - `peer_forward`: requests sent to other nodes, and their replies;
//! - `peer_requests` and `control_lines`: what other nodes send;
//! - `node_requests`: requests for the whole node.
//!
//! Layer: above [`ctx`](super::ctx), [`cluster`](super::cluster), `watch`,
//! `uring` and the plain types; only the shard loop imports it.

mod binary;
mod control_lines;
mod node_requests;
mod output;
mod peer_forward;
mod peer_requests;
mod routing;
mod serve;
mod text;

pub use serve::serve;

use crate::protocol::text::Request;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

/// memcached's answer to a connection over `-c`.
const TOO_MANY_CONNECTIONS: &[u8] = b"ERROR Too many open connections\r\n";

/// Answers a connection past the limit as memcached does, and closes it.
pub async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(TOO_MANY_CONNECTIONS).await;
    let _ = stream.close().await;
}

/// Bytes of data block after a request's line that are to be skipped: an item
/// refused as too large before it was read.
fn swallow_after(req: &Request) -> Option<usize> {
    match req {
        Request::TooLarge { swallow_bytes, .. } => Some(*swallow_bytes),
        Request::Meta(meta) if meta.swallow_bytes > 0 => Some(meta.swallow_bytes),
        _ => None,
    }
}

/// What the read loop does after a read's requests.
pub(super) enum After {
    Continue,
    Close,
    /// `watch`: the connection now only receives log lines.
    Watch(std::sync::Arc<super::watch::Watcher>),
}
