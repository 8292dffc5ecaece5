//! What every task of one shard shares ([`ShardCtx`]), and where a keyed
//! request goes from here ([`Placement`]).
//!
//! The layer between the node's cluster state and one shard's connections:
//! it may import the plain types, the sibling shards and [`cluster`](super::cluster);
//! `conn` and `shard` import it. No I/O of its own.

use super::cluster::{ConnMode, Role, Route, ShardCluster};
use super::messages::{Answer, Ask, ToShard};
use super::siblings::Siblings;
use super::uring::SocketRing;
use super::waiters::Waiters;
use super::Node;
use crate::cluster::ring;
use crate::protocol::ParseLimits;
use glommio::channels::shared_channel::ConnectedSender;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

/// Where a keyed request goes, and the point its key hashed to: computed
/// once, and carried with the request if it crosses to another shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub route: Route,
    /// Outside a cluster, on a node of several shards: the key's ring point.
    /// (In a cluster, ownership is the cluster's to decide, by epoch.)
    pub point: Option<u32>,
}

/// What every task of one shard shares.
pub struct ShardCtx {
    pub id: u32,
    pub node: Arc<Node>,
    pub limits: ParseLimits,
    /// The other shards of this node: channels to them, and slots for their answers.
    pub siblings: Rc<Siblings>,
    /// Connections in the middle of a read's requests; shutdown waits for them.
    pub busy: Cell<usize>,
    /// In a cluster: this shard's links, hints and recovery state.
    pub cluster: Option<Rc<ShardCluster>>,
}

impl ShardCtx {
    pub fn new(
        id: u32,
        node: &Arc<Node>,
        requests_to: Vec<Option<ConnectedSender<ToShard>>>,
        sockets: Option<Rc<SocketRing>>,
    ) -> Self {
        let siblings = Rc::new(Siblings {
            id,
            requests_to,
            doorbells: node.doorbells.clone(),
            waiters: Rc::new(Waiters::default()),
        });
        ShardCtx {
            id,
            node: node.clone(),
            limits: ParseLimits {
                item_size_max_bytes: node.config.item_size_max_bytes,
            },
            cluster: node.cluster.as_ref().map(|c| {
                Rc::new(ShardCluster::new(
                    c.clone(),
                    node.clone(),
                    siblings.clone(),
                    sockets,
                ))
            }),
            siblings,
            busy: Cell::new(0),
        }
    }

    /// Where a keyed request goes: outside a cluster, to the shard of this node
    /// that owns the key; in one, as [`ShardCluster::route`] says.
    pub fn route(&self, key: &[u8], write: bool, mode: ConnMode) -> Placement {
        match &self.cluster {
            None if self.node.shards == 1 => Placement {
                route: Route::Shard(0, Role::Plain),
                point: None,
            },
            None => {
                let point = ring::key_point(key);
                Placement {
                    route: Route::Shard(self.node.ring.owner_of_point(point).shard, Role::Plain),
                    point: Some(point),
                }
            }
            Some(cluster) => Placement {
                route: cluster.route(key, write, mode),
                point: None,
            },
        }
    }

    /// Sends `ask` (made per shard) to every other shard and waits for all answers.
    pub async fn ask_all(&self, ask: impl FnMut() -> Ask) -> Vec<Answer> {
        self.siblings.ask_all(ask).await
    }
}
