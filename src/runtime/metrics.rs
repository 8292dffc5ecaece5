//! The metrics port: a plain thread serving `GET /metrics` (does I/O).
//!
//! It is off the shards' path: for each scrape it connects to the node's own
//! client port, as any client would, asks for `stats`, `stats shards`,
//! `stats latency`, `stats hotkeys` (and `stats peers` in a cluster), which the shards gather
//! as they do for every client, and answers with [`crate::metrics::render`].
//! Scrapes are served one at a time; every read and write has a timeout.
//!
//! Bottom layer: imports nothing else of `runtime`.

use crate::limits::{
    METRICS_IO_TIMEOUT_SECS, METRICS_REQUEST_HEAD_MAX_BYTES, METRICS_STATS_REPLY_MAX_BYTES,
};
use crate::metrics::{self, Scrape};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Binds the metrics port, so that a port in use stops the node at start.
pub fn bind(addr: &str, port: u16) -> Result<TcpListener, String> {
    TcpListener::bind((addr, port))
        .map_err(|e| format!("--metrics-port {port} on {addr}: cannot listen: {e}"))
}

/// Serves scrapes on `listener` for the node whose client port is `node`, for
/// as long as the process runs.
pub fn spawn(listener: TcpListener, node: SocketAddr, cluster: bool) -> std::io::Result<()> {
    let node = reachable(node);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if let Err(e) = answer(stream, node, cluster) {
                            log::debug!("metrics: a scrape failed: {e}");
                        }
                    }
                    Err(e) => log::warn!("metrics: accept failed: {e}"),
                }
            }
        })
        .map(|_| ())
}

/// The node's client port as this thread can reach it: a wildcard listen
/// address is reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

fn answer(mut stream: TcpStream, node: SocketAddr, cluster: bool) -> std::io::Result<()> {
    let timeout = Some(Duration::from_secs(METRICS_IO_TIMEOUT_SECS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= METRICS_REQUEST_HEAD_MAX_BYTES {
            return respond(&mut stream, "431 Request Header Fields Too Large", "");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "");
    }
    if path != "/metrics" {
        return respond(&mut stream, "404 Not Found", "metrics are at /metrics\n");
    }
    let body = match ask_node(node, cluster) {
        Ok(scrape) => metrics::render(&scrape),
        Err(e) => {
            log::warn!("metrics: cannot read the node's stats at {node}: {e}");
            metrics::render_down()
        }
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    respond(&mut stream, "200 OK", &body)
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Asks the node for the stats replies of one scrape over its client port.
fn ask_node(node: SocketAddr, cluster: bool) -> std::io::Result<Scrape> {
    let timeout = Duration::from_secs(METRICS_IO_TIMEOUT_SECS);
    let mut conn = TcpStream::connect_timeout(&node, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.set_nodelay(true)?;
    let mut request = b"stats\r\nstats shards\r\nstats latency\r\nstats hotkeys\r\n".to_vec();
    if cluster {
        request.extend_from_slice(b"stats peers\r\n");
    }
    let replies = if cluster { 5 } else { 4 };
    conn.write_all(&request)?;
    let mut text = Vec::new();
    let mut chunk = [0u8; 16384];
    while count_ends(&text) < replies {
        if text.len() > METRICS_STATS_REPLY_MAX_BYTES {
            return Err(std::io::Error::other("stats replies too long"));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other("the node closed the connection"));
        }
        text.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    // One reply per `END` line, in the order asked.
    let mut replies = vec![String::new()];
    for line in text.split_inclusive('\n') {
        replies
            .last_mut()
            .expect("one reply at least")
            .push_str(line);
        if line == "END\r\n" {
            replies.push(String::new());
        }
    }
    let mut replies = replies.iter().map(|r| metrics::parse_stat_lines(r));
    let mut next = || replies.next().unwrap_or_default();
    Ok(Scrape {
        general: next(),
        shards: next(),
        latency: next(),
        hot_keys: next(),
        peers: if cluster { Some(next()) } else { None },
    })
}

/// Complete replies in `text`: lines that are `END`.
fn count_ends(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|line| *line == b"END\r")
        .count()
}
