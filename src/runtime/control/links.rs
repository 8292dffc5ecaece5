//! The control thread's connections to the other nodes. Each peer's
//! connection is owned by a thread of its own, fed through a bounded queue, so
//! the control loop never waits on a peer: a paused node still completes TCP
//! connections in its kernel but never finishes the members' handshake, and a
//! loop that waited out the peer timeout for each message to it could not
//! decide anything with the others in time.
//!
//! A line that finds its peer's queue full
//! ([`CONTROL_LINK_QUEUE_DEPTH`]) is dropped: Paxos retries what it needs, and
//! a failure report is sent again at the next interval.

use crate::limits::CONTROL_LINK_QUEUE_DEPTH;
use crate::runtime::cluster::ClusterNode;
use crate::runtime::sealed::Sealed;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// How long a link waits to connect or write to its peer.
const PEER_IO_TIMEOUT: Duration = Duration::from_millis(200);

/// What the control thread hands a peer's link.
enum Outgoing {
    /// A one-way line (`rc paxos ...`).
    Line(Vec<u8>),
    /// `rc suspect ...`, this node's heartbeat: the peer answers `OK`, and a
    /// peer that does not in time is marked TKO, as the data path would.
    Report(Vec<u8>),
}

/// The control thread's side: a queue per peer, its link thread started on
/// first use.
pub struct Links {
    cluster: Arc<ClusterNode>,
    queues: HashMap<u32, SyncSender<Outgoing>>,
}

impl Links {
    pub fn new(cluster: Arc<ClusterNode>) -> Self {
        Links {
            cluster,
            queues: HashMap::new(),
        }
    }

    /// Queues the one-way `line` for node `to`.
    pub fn send(&mut self, to: u32, line: Vec<u8>) {
        self.queue(to, Outgoing::Line(line));
    }

    /// Queues the failure report `line` for node `to`.
    pub fn report(&mut self, to: u32, line: Vec<u8>) {
        self.queue(to, Outgoing::Report(line));
    }

    fn queue(&mut self, to: u32, outgoing: Outgoing) {
        if to == self.cluster.me {
            return;
        }
        if !self.queues.contains_key(&to) {
            let Some(queue) = start_link(self.cluster.clone(), to) else {
                return;
            };
            self.queues.insert(to, queue);
        }
        if offer(&self.queues[&to], outgoing) == Offered::Gone {
            // The link thread is gone (it panicked): a new one next time.
            self.queues.remove(&to);
        }
    }
}

/// What became of a line offered to a link's queue.
#[derive(Debug, PartialEq)]
enum Offered {
    Queued,
    /// The queue was full: the line is dropped, at once.
    Dropped,
    /// The link thread has ended.
    Gone,
}

fn offer(queue: &SyncSender<Outgoing>, outgoing: Outgoing) -> Offered {
    match queue.try_send(outgoing) {
        Ok(()) => Offered::Queued,
        Err(TrySendError::Full(_)) => Offered::Dropped,
        Err(TrySendError::Disconnected(_)) => Offered::Gone,
    }
}

/// Starts node `to`'s link thread; `None` (logged) if no thread can start.
fn start_link(cluster: Arc<ClusterNode>, to: u32) -> Option<SyncSender<Outgoing>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CONTROL_LINK_QUEUE_DEPTH);
    match std::thread::Builder::new()
        .name(format!("control-link-{to}"))
        .spawn(move || run_link(&cluster, to, rx))
    {
        Ok(_) => Some(tx),
        Err(e) => {
            log::error!("cannot start the control thread's link to node {to}: {e}");
            None
        }
    }
}

/// A link thread: sends what is queued for node `to`, connecting when there
/// is no connection; ends when the control thread drops the queue. A node
/// just removed from the configuration is still reached at its last address,
/// so that it learns of its removal.
fn run_link(cluster: &ClusterNode, to: u32, queue: Receiver<Outgoing>) {
    let mut link: Option<Link> = None;
    let mut addr: Option<SocketAddr> = None;
    for outgoing in queue {
        if link.is_none() {
            addr = cluster.view().client_addr(to).or(addr);
            link = addr.and_then(|addr| connect(cluster, addr).ok());
        }
        let sent = match (&mut link, &outgoing) {
            (Some(stream), Outgoing::Line(line)) => stream.write_all(line).is_ok(),
            (Some(stream), Outgoing::Report(line)) => {
                stream.write_all(line).is_ok() && answered_ok(cluster, stream)
            }
            (None, _) => false,
        };
        if !sent {
            link = None;
            if matches!(outgoing, Outgoing::Report(_)) {
                cluster.mark_tko(to);
            }
        }
    }
}

/// Whether the peer answers `OK` within the peer timeout.
fn answered_ok(cluster: &ClusterNode, stream: &mut Link) -> bool {
    let mut ok = [0u8; 4];
    stream
        .get_ref()
        .set_read_timeout(Some(cluster.peer_timeout))
        .and_then(|_| stream.read_exact(&mut ok))
        .is_ok()
        && &ok == b"OK\r\n"
}

/// A connection to another node's client port, sealed (`cluster::seal`).
type Link = Sealed<TcpStream>;

/// A connection to another node's client port, through the members-only
/// handshake (a peer that fails it is logged once, at warn).
fn connect(cluster: &ClusterNode, addr: SocketAddr) -> std::io::Result<Link> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let fd = crate::runtime::connect_from(cluster.local_ip, addr)?;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
    let timeout = PollTimeout::from(PEER_IO_TIMEOUT.as_millis() as u16);
    if poll(&mut fds, timeout)? == 0 {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    let error = nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SocketError)?;
    if error != 0 {
        return Err(std::io::Error::from_raw_os_error(error));
    }
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(PEER_IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut stream = stream;
    stream.set_read_timeout(Some(cluster.peer_timeout.max(PEER_IO_TIMEOUT)))?;
    match crate::runtime::auth::handshake_blocking(
        &mut stream,
        &cluster.secret,
        &cluster.me.to_string(),
    ) {
        Ok(sealing) => {
            cluster.auth_passed(&addr.to_string());
            Ok(Sealed::new(stream, sealing))
        }
        Err(crate::runtime::auth::AuthFailure::Io(e)) => Err(e),
        Err(crate::runtime::auth::AuthFailure::Handshake(e)) => {
            cluster.warn_auth_once(
                &addr.to_string(),
                format_args!("refusing to talk to {addr}: {e}"),
            );
            Err(std::io::ErrorKind::PermissionDenied.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_past_a_full_link_queue_is_dropped_at_once() {
        let (tx, rx) = std::sync::mpsc::sync_channel(CONTROL_LINK_QUEUE_DEPTH);
        for n in 0..CONTROL_LINK_QUEUE_DEPTH {
            let line = format!("line {n}").into_bytes();
            assert_eq!(offer(&tx, Outgoing::Line(line)), Offered::Queued);
        }
        let report = Outgoing::Report(b"rc suspect 1 -\r\n".to_vec());
        assert_eq!(offer(&tx, report), Offered::Dropped);
        // The link takes one: there is room for one more, and the queue
        // kept the order it was given.
        match rx.recv().expect("a queued line") {
            Outgoing::Line(line) => assert_eq!(line, b"line 0"),
            Outgoing::Report(_) => panic!("a report where the first line was"),
        }
        let last = Outgoing::Line(b"last".to_vec());
        assert_eq!(offer(&tx, last), Offered::Queued);
        drop(rx);
        let after = Outgoing::Line(b"after".to_vec());
        assert_eq!(offer(&tx, after), Offered::Gone);
    }
}
