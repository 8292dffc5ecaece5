//! The systemd notify protocol: tells the service manager when the node is
//! ready (all shards listen) and when it is stopping, for `Type=notify` units.
//!
//! One datagram to the socket named in `$NOTIFY_SOCKET` (a path, or an abstract
//! name written with a leading `@`); without the variable this does nothing.
//!
//! Bottom layer: imports nothing else of `runtime`.

use std::os::unix::net::UnixDatagram;

/// The state lines a node sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    Stopping,
}

/// Sends `state` to the service manager, if one asked for notifications.
pub fn notify(state: State) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = match state {
        State::Ready => format!("READY=1\nMAINPID={}\n", std::process::id()),
        State::Stopping => "STOPPING=1\n".to_string(),
    };
    if let Err(e) = send(&target.to_string_lossy(), message.as_bytes()) {
        log::warn!("cannot notify the service manager at {target:?}: {e}");
    }
}

fn send(target: &str, message: &[u8]) -> std::io::Result<usize> {
    let socket = UnixDatagram::unbound()?;
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        socket.send_to_addr(message, &addr)
    } else {
        socket.send_to(message, target)
    }
}
