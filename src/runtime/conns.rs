//! The sockets of one shard, its listeners and its client connections, as
//! `stats conns` lists them (no I/O: the socket code registers and updates them).
//!
//! A connection keeps its entry current with two cell writes per read; the list
//! is read only when a client asks, and each shard answers for its own sockets.
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::engine::ConnView;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

/// What a socket is doing, named as memcached names its connection states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// A listening socket.
    Listening,
    /// Between requests, with nothing unread.
    NewCmd,
    /// Holding part of a request line.
    Waiting,
    /// Holding a whole line, waiting for the rest of its data block.
    Nread,
    /// Running the requests of a read (the connection asking is in this state).
    ParseCmd,
}

impl ConnState {
    pub fn memcached_name(self) -> &'static str {
        match self {
            ConnState::Listening => "conn_listening",
            ConnState::NewCmd => "conn_new_cmd",
            ConnState::Waiting => "conn_waiting",
            ConnState::Nread => "conn_nread",
            ConnState::ParseCmd => "conn_parse_cmd",
        }
    }
}

struct Entry {
    /// The socket's file descriptor, as memcached numbers its connections.
    id: u64,
    addr: Option<SocketAddr>,
    /// For a connection: the address it came in on.
    listen_addr: Option<SocketAddr>,
    state: Cell<ConnState>,
    last_cmd: Cell<Instant>,
}

thread_local! {
    /// This shard's sockets by id. Not the store: only the socket code and
    /// `stats conns` touch it, never across an `.await`.
    static SOCKETS: RefCell<BTreeMap<u64, Rc<Entry>>> = const { RefCell::new(BTreeMap::new()) };
}

/// A socket's entry in its shard's list, removed when this is dropped.
pub struct Registration(Rc<Entry>);

impl Registration {
    /// Lists a socket of this shard. `since` is when it last ran a command (for
    /// a listener or a new connection: when it opened).
    pub fn new(
        id: u64,
        addr: Option<SocketAddr>,
        listen_addr: Option<SocketAddr>,
        state: ConnState,
        since: Instant,
    ) -> Registration {
        let entry = Rc::new(Entry {
            id,
            addr,
            listen_addr,
            state: Cell::new(state),
            last_cmd: Cell::new(since),
        });
        SOCKETS.with(|s| s.borrow_mut().insert(id, entry.clone()));
        Registration(entry)
    }

    /// The connection read bytes at `at` and is running the requests in them.
    pub fn running(&self, at: Instant) {
        self.0.state.set(ConnState::ParseCmd);
        self.0.last_cmd.set(at);
    }

    /// For a connection, the address it came in on.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.0.listen_addr
    }

    /// The connection is done with a read and waits for more.
    pub fn idle(&self, state: ConnState) {
        self.0.state.set(state);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        SOCKETS.with(|s| {
            let mut sockets = s.borrow_mut();
            // A descriptor reused by a newer socket keeps the newer entry.
            if sockets
                .get(&self.0.id)
                .is_some_and(|e| Rc::ptr_eq(e, &self.0))
            {
                sockets.remove(&self.0.id);
            }
        });
    }
}

/// This shard's sockets, by id, for `stats conns`.
pub fn views(now: Instant) -> Vec<ConnView> {
    SOCKETS.with(|s| {
        s.borrow()
            .values()
            .map(|e| ConnView {
                id: e.id,
                addr: e.addr.map_or_else(String::new, tcp_name),
                listen_addr: e.listen_addr.map_or_else(String::new, tcp_name),
                state: e.state.get().memcached_name(),
                secs_since_last_cmd: now.saturating_duration_since(e.last_cmd.get()).as_secs(),
            })
            .collect()
    })
}

/// memcached's name for a TCP address: `tcp:127.0.0.1:11211`, `tcp6:[::1]:11211`.
pub fn tcp_name(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("tcp:{a}"),
        SocketAddr::V6(a) => format!("tcp6:{a}"),
    }
}

/// The state a connection waits in when `unread` is what it holds of its next
/// request and `swallow` bytes of a refused data block are still to come.
pub fn idle_state(unread: &[u8], swallow: usize, line_len_max: usize) -> ConnState {
    if swallow > 0 {
        return ConnState::Nread;
    }
    if unread.is_empty() {
        return ConnState::NewCmd;
    }
    // A line is never longer than this, so the search is bounded whatever the size
    // of the data block being read.
    let line = &unread[..unread.len().min(line_len_max)];
    if memchr::memchr(b'\n', line).is_some() {
        ConnState::Nread
    } else {
        ConnState::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_as_memcached_names_them() {
        assert_eq!(
            tcp_name("127.0.0.1:11211".parse().unwrap()),
            "tcp:127.0.0.1:11211"
        );
        assert_eq!(tcp_name("[::1]:11211".parse().unwrap()), "tcp6:[::1]:11211");
    }

    #[test]
    fn a_connection_holding_a_whole_line_waits_for_its_data_block() {
        assert_eq!(idle_state(b"", 0, 2048), ConnState::NewCmd);
        assert_eq!(idle_state(b"", 5, 2048), ConnState::Nread);
        assert_eq!(idle_state(b"set k 0 0 5", 0, 2048), ConnState::Waiting);
        assert_eq!(idle_state(b"set k 0 0 5\r\nab", 0, 2048), ConnState::Nread);
    }

    #[test]
    fn a_closed_socket_leaves_the_list_but_a_newer_one_on_its_descriptor_stays() {
        let now = Instant::now();
        let old = Registration::new(7, None, None, ConnState::NewCmd, now);
        let newer = Registration::new(7, None, None, ConnState::Listening, now);
        drop(old);
        assert_eq!(views(now).len(), 1);
        assert_eq!(views(now)[0].state, "conn_listening");
        drop(newer);
        assert!(views(now).is_empty());
    }
}
