//! Placement, failure detection and the cluster's three wires (pure):
//! - [`ring`], [`placement`]: the consistent-hash ring and who owns a key;
//! - [`route`]: which owner a request goes to, and what this node serves or
//!   refuses while it recovers, settles, copies moved keys or is cut off;
//! - [`config`]: the cluster configuration and the cluster file;
//! - [`discovery`]: the client wire, how the configuration is shown to memcached
//!   clients (`stats cluster`, `config get cluster`);
//! - [`wire`]: the node-to-node data wire (memcached's protocol plus `rc` lines);
//! - [`codec`]: the consensus wire (Paxos messages, `px1` lines) and the
//!   acceptor's durable file;
//! - [`auth`]: the handshake that keeps `rc` and `px1` lines to members;
//! - [`seal`]: the MAC on every frame members send each other after it;
//! - [`tombstones`]: the removals a shard remembers, with their CAS uniques;
//! - [`detector`]: failure detection, which nodes to suspect and the mark-down
//!   or mark-up to propose.

pub mod auth;
pub mod codec;
pub mod config;
pub mod detector;
pub mod discovery;
pub mod placement;
pub mod ring;
pub mod route;
pub mod seal;
pub mod tombstones;
pub mod wire;
