//! A connection's socket, lent for one reply to the shard that owns the key.
//!
//! A lone request for a key another shard owns would otherwise wake two
//! threads before its reply leaves: the owner, and then this shard with the
//! answer. When a read's replies are that one reply and then only this
//! shard's own (a get's `END`), and nothing this shard wrote to the
//! connection is still on its way, the connection lends the owner its socket
//! through a [`SendGate`], with its own replies: the owner sends them all
//! (one non-blocking `send`), then answers as usual with whatever the socket
//! did not take. The connection writes nothing until that answer comes, so
//! replies stay in order.
//!
//! The gate also keeps the descriptor from being closed, and its number
//! given to another socket, while an owner sends on it.
//!
//! Bottom layer: imports nothing else of `runtime`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
const SENDING: u8 = 1;
const CLOSED: u8 = 2;

/// One connection's socket, as another shard may send on it.
#[derive(Debug)]
pub struct SendGate {
    fd: RawFd,
    state: AtomicU8,
}

impl SendGate {
    pub fn new(fd: RawFd) -> SendGate {
        SendGate {
            fd,
            state: AtomicU8::new(OPEN),
        }
    }

    /// Sends what of `bytes` the socket takes now, without waiting: how many
    /// bytes went (0 when it took none, failed, or the connection is closed).
    pub fn send(&self, bytes: &[u8]) -> usize {
        use nix::sys::socket::{send, MsgFlags};
        if bytes.is_empty()
            || self
                .state
                .compare_exchange(OPEN, SENDING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return 0;
        }
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        let sent = send(self.fd, bytes, flags).unwrap_or(0);
        self.state.store(OPEN, Ordering::Release);
        sent
    }

    /// No more sends: waits out one in progress. The owner of the descriptor
    /// calls this before closing it.
    pub fn close(&self) {
        while self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            if self.state.load(Ordering::Relaxed) == CLOSED {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SendGate;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_gate_sends_until_it_is_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let gate = SendGate::new(server.as_raw_fd());
        assert_eq!(gate.send(b"END\r\n"), 5);
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"END\r\n");
        gate.close();
        gate.close();
        assert_eq!(gate.send(b"END\r\n"), 0, "a closed gate sends nothing");
    }
}
