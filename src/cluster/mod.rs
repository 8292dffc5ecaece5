//! Placement: the consistent-hash ring, the cluster configuration, who owns a
//! key, how the configuration is shown to clients, what nodes say to each other
//! on the data path, and the configuration's consensus messages and durable state
//! as bytes, the handshake that keeps `rc` lines to members, and the removals a
//! shard remembers (pure).

pub mod auth;
pub mod codec;
pub mod config;
pub mod encode;
pub mod placement;
pub mod ring;
pub mod tombstones;
pub mod wire;
