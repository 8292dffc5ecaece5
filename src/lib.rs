//! ringcache: a memcached-compatible, clustered in-memory cache.
//!
//! The crate is split into a pure core and a thin shell:
//! - [`cli`] reads the command line (memcached's flags) into a checked `Config` (pure);
//! - [`protocol`] turns bytes into requests and replies into bytes (pure);
//! - [`storage`] is one shard's store: arena, index, TTL, eviction (pure);
//! - [`engine`] applies one parsed request to one shard's store (pure);
//! - [`hotkeys`] is the space-saving sketch of a shard's most requested keys (pure);
//! - [`cluster`] holds the consistent-hash ring, the cluster configuration and placement (pure);
//! - [`consensus`] is the Multi-Paxos state machine that agrees the configuration (pure);
//! - [`runtime`] is the only part that touches glommio, sockets, signals and the clock;
//! - [`admin`] is `ringcache cluster ...`, the admin client: a client of a node, outside the server.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod consensus;
pub mod engine;
pub mod hotkeys;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod runtime;
pub mod stats;
pub mod storage;
