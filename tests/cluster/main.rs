//! The cluster data plane, end to end: several `ringcache --cluster FILE
//! --node-id N` processes, node N on its own loopback address 127.0.0.N, and,
//! where a test needs a misbehaving node, a fake peer inside the test that
//! answers garbage or never answers (does I/O: real processes, real sockets).
//!
//! Checked from outside: each key's owners are what `Placement::owners`
//! computes from the same cluster file, and each owner's copy is read locally
//! with `rc rep 1` + `mg`. One file per behaviour:
//!
//! - `replication.rs`: every key held by exactly its R owners; `touch` and
//!   `flush_all` reach them all.
//! - `routing.rs`: no hop through the primary's shard endpoint, one hop
//!   answered at once, binary requests through any node, epoch mismatch refused.
//! - `peer_faults.rs`: a peer that sends garbage, one that never answers, a
//!   key no owner answers for.
//! - `failover.rs`: a node killed under load; dead nodes marked down (and up)
//!   by consensus, and what writes do meanwhile.
//! - `recovery.rs`: restarted and paused nodes catching up (hints, copies,
//!   removals that win over stale copies).
//! - `membership.rs`: SIGHUP, Paxos configuration changes, joins and leaves,
//!   wiped nodes coming back as new members.
//! - `partition.rs`: nftables partitions, the minority side and healing.
//! - `common/`: the cluster under test (`mod.rs`), the fake peer, requests and
//!   their checks, the client thread run under faults, and nodes started with
//!   `--init` or `--join`. Helpers shared with other test targets are in
//!   `tests/support/`.
//!
//! `cargo test --release --test cluster -- NAME` runs the tests whose path
//! holds NAME; the list names each as `file::test_name`.

#[path = "../support/mod.rs"]
mod support;

mod common;

mod failover;
mod membership;
mod partition;
mod peer_faults;
mod recovery;
mod replication;
mod routing;
