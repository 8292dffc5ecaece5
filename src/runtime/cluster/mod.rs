//! A node's part in a cluster: where each request goes, replication of the
//! writes this node applies, hints for owners that missed writes, recovery of a
//! node that starts or was cut off, and probes of the nodes it skips (TKO).
//!
//! [`ClusterNode`] is shared by the node's shards (the configuration, which
//! peers are TKO, counters); [`ShardCluster`] is one shard's own part (its
//! links to other nodes' shards, its hints, the keys written while the node
//! recovers). The routing policy itself is pure, in `cluster::route`; this
//! module reads the facts it decides on. The rules, node by node:
//!
//! - Reads go to the first owner in the key's read order that is not TKO (and
//!   not this node while it recovers); a failed or timed-out read tries the next.
//! - Writes go to the first owner that is not TKO: that node applies the write
//!   as primary, sends the resulting item to the other owners, and answers once
//!   `write_ack` owners (itself included) have it. An owner it cannot reach gets
//!   a hint (the key), replayed when that owner asks during its recovery.
//! - A node recovers when it starts and when it finds it was paused: until every
//!   reachable peer has pushed what it missed (all shared items after a start,
//!   the hinted keys after a pause), it answers forwarded reads and writes with
//!   `SERVER_ERROR recovering` and its own reads and writes go to other owners
//!   (it is primary for a write only when no other owner is reachable). Pushed
//!   copies never overwrite a key it wrote as primary since recovery began,
//!   nor a newer state (a larger CAS unique) it took as a replica.
//! - When an epoch moves keys (nodes added or removed, `replicas` changed), a
//!   node given keys it did not own drops any old copies of them and copies
//!   them from the nodes holding them, reading them only once it has (other
//!   owners serve them meanwhile); a copy never replaces a newer item (higher
//!   CAS). A node that lost keys releases them once every new owner reports
//!   the epoch and has finished copying. A node an epoch removes owns nothing,
//!   forwards, and is copied from.
//!
//! The module is split by job: `node` holds the state the shards share and
//! puts a new epoch's view in force; `routing` is one shard's part and reads
//! the facts routing decides on; `replication` applies keyed requests and
//! sends writes to the other owners; `hints` remembers and replays the writes
//! an owner missed; `settling` and `recovery` cover a start, a pause or a
//! rejoin; `migration` copies and releases keys an epoch moves; `tko` marks
//! and probes the nodes it skips; `watch` is the shard task that drives them;
//! `stats` writes `stats cluster` and `stats peers`; `peer` holds one shard's
//! links to the shards of other nodes.
//!
//! Layer: above the plain types (`messages`, `siblings`, `state`, `auth`);
//! below one shard's context and connections, which it never imports. The
//! shard's own part, [`ShardCluster`], holds what it needs of the shard (its
//! node, and its `Siblings` to ask the other shards).

mod hints;
mod migration;
mod node;
pub(crate) mod peer;
mod recovery;
mod replication;
mod routing;
mod settling;
mod stats;
mod tko;
mod watch;

pub use crate::cluster::route::{Refusal, Role, Route};
pub use migration::{drop_gained, release_items};
pub use node::{ClusterNode, View, VOTES_SEEN_FILE};
pub use recovery::{drop_shared, exchange, recover};
pub use replication::{apply, apply_binary, apply_get_one, is_write, Ticket};
pub use routing::{ConnMode, ShardCluster};
pub use stats::{write_stats_cluster, write_stats_peers};
pub use watch::watch;
