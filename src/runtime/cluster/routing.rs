//! One shard's part of the cluster ([`ShardCluster`]): its copy of the view,
//! its links to other nodes' shards, and the routing glue that gathers the
//! facts `cluster::route` decides on (the policy itself is pure, there). No
//! I/O here: links connect when used.

use super::hints::Hints;
use super::node::{ClusterNode, View};
use super::peer::{Link, Pending};
use crate::cluster::config::NodeState;
use crate::cluster::ring::{key_point, Owner};
use crate::cluster::route::{
    self, Access, Facts, Local, Member, OwnerFacts, OwnerList, Policy, Refusal, Route,
};
use crate::cluster::tombstones::Tombstones;
use crate::cluster::wire::PeerMode;
use crate::runtime::siblings::Siblings;
use crate::runtime::uring::SocketRing;
use crate::storage::ttl::Clock;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How a connection's requests are served: as a client's, or as another node's
/// after an `rc <mode> <epoch>` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnMode {
    Client,
    Peer { mode: PeerMode, epoch: u64 },
}

/// One shard's part of the cluster.
pub struct ShardCluster {
    pub node: Arc<ClusterNode>,
    /// The node this shard belongs to (for the store's clock).
    pub(super) runtime: Arc<crate::runtime::Node>,
    /// Links carrying replicated items, copies, merges and node-wide
    /// requests: their receivers apply them without waiting on anything.
    pub(super) links: RefCell<HashMap<Owner, Rc<Link>>>,
    /// Links carrying forwarded client requests, apart from the others: the
    /// receiver of a forwarded write waits for its own replicas before it
    /// answers and reads on. On one connection with the replicated items,
    /// two nodes forwarding writes to each other would each wait behind the
    /// other's forwarded write for a replica acknowledgement queued behind it,
    /// until `--peer-timeout-ms` broke the cycle (and made the other TKO).
    /// What the two kinds of link once ordered by sharing a connection, a
    /// replicated item sent before a request forwarded to the same owner
    /// about the same key, [`ShardCluster::replica_barrier`] orders.
    pub(super) forward_links: RefCell<HashMap<Owner, Rc<Link>>>,
    pub(super) hints: RefCell<HashMap<u32, Hints>>,
    /// The removals this shard applied, with their CAS uniques.
    pub(super) tombstones: RefCell<Tombstones>,
    /// Client requests this shard forwarded to each node, by node id (`stats peers`).
    pub(super) forwarded: RefCell<HashMap<u32, u64>>,
    /// Peers this shard is settling with (see [`exchange`](super::exchange)).
    pub(super) exchanging: RefCell<HashSet<u32>>,
    pub(super) view: RefCell<Arc<View>>,
    pub(super) view_epoch: Cell<u64>,
    /// This shard's number on its node.
    pub(super) shard: u32,
    /// The other shards of this node, which recoveries and releases ask too.
    pub(super) siblings: Rc<Siblings>,
    /// The shard's socket ring, which its links use once connected.
    sockets: Option<Rc<SocketRing>>,
}

impl ShardCluster {
    pub fn new(
        node: Arc<ClusterNode>,
        runtime: Arc<crate::runtime::Node>,
        siblings: Rc<Siblings>,
        sockets: Option<Rc<SocketRing>>,
    ) -> ShardCluster {
        let view = node.view();
        ShardCluster {
            shard: siblings.id,
            siblings,
            runtime,
            view_epoch: Cell::new(view.epoch()),
            view: RefCell::new(Arc::new((*view).clone())),
            node,
            links: RefCell::new(HashMap::new()),
            forward_links: RefCell::new(HashMap::new()),
            hints: RefCell::new(HashMap::new()),
            tombstones: RefCell::default(),
            forwarded: RefCell::new(HashMap::new()),
            exchanging: RefCell::new(HashSet::new()),
            sockets,
        }
    }

    /// Counts a client request forwarded to `node`.
    pub fn count_forwarded(&self, node: u32) {
        *self.forwarded.borrow_mut().entry(node).or_insert(0) += 1;
    }

    /// Client requests this shard forwarded, by node id.
    pub fn forwarded_to(&self) -> Vec<(u32, u64)> {
        self.forwarded
            .borrow()
            .iter()
            .map(|(&node, &n)| (node, n))
            .collect()
    }

    /// This shard as an owner of keys.
    pub(super) fn own_owner(&self) -> Owner {
        Owner {
            node: self.node.me,
            shard: self.shard,
        }
    }

    /// This shard's link to `owner`'s shard, made on first use. An owner found
    /// in an older view may have left the cluster since: its link goes nowhere
    /// (port 0 refuses at once), so the caller's request fails and moves on to
    /// the owners of the view in force.
    pub fn link(&self, owner: Owner) -> Rc<Link> {
        self.link_in(&self.links, owner)
    }

    /// The replicated item of `key` this shard sent `owner` and has not yet
    /// seen settled, if any. A request about `key` forwarded to `owner`
    /// waits for it: `owner` applies a replicated item as it comes, so one
    /// sent while this node was the key's primary (a stand-in, or while
    /// `owner` settled) must not arrive after a later request made `owner`
    /// the primary again, on the other connection.
    pub fn replica_barrier(&self, owner: Owner, key: &[u8]) -> Option<Pending> {
        let links = self.links.borrow();
        links.get(&owner)?.pending_tagged(key_tag(key))
    }

    /// The link to `owner` for forwarded client requests (see `forward_links`).
    pub fn forward_link(&self, owner: Owner) -> Rc<Link> {
        self.link_in(&self.forward_links, owner)
    }

    /// The link to `owner` kept in `links`, made on first use (see [`Self::link`]).
    fn link_in(&self, links: &RefCell<HashMap<Owner, Rc<Link>>>, owner: Owner) -> Rc<Link> {
        let view = self.view();
        let Some(addr) = view.shard_addr(owner) else {
            return Link::new(
                owner,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                self.node.clone(),
                None,
            );
        };
        links
            .borrow_mut()
            .entry(owner)
            .or_insert_with(|| Link::new(owner, addr, self.node.clone(), self.sockets.clone()))
            .clone()
    }

    pub(super) fn node_clock(&self) -> Clock {
        self.runtime.clock()
    }

    /// This shard's copy of the view in force, taken up when the epoch moved.
    pub fn view(&self) -> Arc<View> {
        let epoch = self.node.epoch();
        if epoch != self.view_epoch.get() {
            let view = self.node.view();
            // Links to endpoints that moved are dropped; new ones connect anew.
            for links in [&self.links, &self.forward_links] {
                links
                    .borrow_mut()
                    .retain(|owner, link| view.shard_addr(*owner) == Some(link.addr()));
            }
            self.view_epoch.set(view.epoch());
            *self.view.borrow_mut() = Arc::new((*view).clone());
        }
        self.view.borrow().clone()
    }

    /// Where a keyed request on a connection in `mode` goes (see `route`).
    pub fn route(&self, key: &[u8], write: bool, mode: ConnMode) -> Route {
        // A pause that ended just now is noticed here too, before anything is
        // served from this node's copies: the watch may not have ticked yet.
        self.node.notice_pause();
        let view = self.view();
        let access = Access::of(write);
        match mode {
            ConnMode::Client => {
                if self.cut_off(&view) {
                    return Route::Refuse(Refusal::NoOwnerReachable);
                }
                route::client(&self.facts(&view, key), access)
            }
            // A client's request another node forwarded is served as this
            // node's own client's would be: not while it is cut off from the
            // majority, and only once it has settled after reaching it again
            // (before its next own client's request, a forwarded write would
            // find it primary with copies that missed the majority's writes).
            // The sender tries the next owner.
            ConnMode::Peer {
                mode: PeerMode::Forward,
                ..
            } if self.cut_off(&view) => Route::Refuse(Refusal::Recovering),
            ConnMode::Peer { mode, epoch } => {
                route::peer(&self.facts(&view, key), mode, epoch, access)
            }
        }
    }

    /// Whether this node reaches fewer than a majority of the members (see
    /// `route::cut_off`), noting it; once it reaches a majority again after
    /// being cut off, it starts settling with its peers.
    fn cut_off(&self, view: &View) -> bool {
        let members = view.config().nodes().iter().map(|n| Member {
            node: n.id,
            tko: view.tko_mark(n.id),
        });
        if route::cut_off(&self.policy(view), members) {
            self.node.was_cut_off.store(true, Ordering::Release);
            return true;
        }
        self.node.notice_rejoin();
        false
    }

    /// The next owner a client's request for `key` may go to, leaving out those
    /// in `tried` (see `route::next_candidate`).
    pub fn next_candidate(
        &self,
        view: &View,
        key: &[u8],
        write: bool,
        tried: &[Owner],
    ) -> Option<Owner> {
        route::next_candidate(&self.facts(view, key), Access::of(write), tried)
    }

    pub(super) fn policy(&self, view: &View) -> Policy {
        Policy {
            me: self.node.me,
            consensus: self.node.consensus.load(Ordering::Acquire),
            write_ack: view.config().write_ack(),
        }
    }

    /// What routing `key` depends on, read from `view` and this node's state
    /// now. The key is hashed once, here.
    fn facts(&self, view: &View, key: &[u8]) -> Facts {
        let node = &self.node;
        let point = key_point(key);
        let facts_of = |owner: Owner| OwnerFacts {
            owner,
            down: view
                .config()
                .node(owner.node)
                .is_some_and(|n| n.state == NodeState::Down),
            tko: view.tko_mark(owner.node),
            addressed: view.shard_addr(owner).is_some(),
        };
        let owners: OwnerList = view
            .placement
            .owners_of_point(point)
            .iter()
            .map(|&o| facts_of(o))
            .collect();
        let read_order: OwnerList = view
            .placement
            .read_order_of_point(point)
            .iter()
            .map(|o| {
                *owners
                    .iter()
                    .find(|f| f.owner == *o)
                    .expect("the read order holds the key's owners")
            })
            .collect();
        // The shard's own snapshot of the view: no lock on the request path.
        let previous = view.previous.as_ref().map(|p| {
            p.owners_of_point(point)
                .iter()
                .map(|&o| facts_of(o))
                .collect()
        });
        // Only asked of a node that owns the key.
        let mine = owners
            .iter()
            .find(|o| o.owner.node == node.me)
            .map(|o| o.owner);
        let lacks_shared = mine.is_some() && node.lacks_shared(key);
        Facts {
            policy: self.policy(view),
            epoch: view.epoch(),
            owners,
            read_order,
            previous,
            local: Local {
                recovering: node.is_recovering(),
                settling: node.settling_after_pause.load(Ordering::Acquire),
                lacks_shared,
                may_read: mine.is_some_and(|o| !lacks_shared && node.copy_is_current(key, o)),
                handing_over: node.release_due_ms.load(Ordering::Acquire) != 0,
            },
        }
    }
}

/// What a replicated item is tagged with on its link (see
/// [`ShardCluster::replica_barrier`]): a hash of its key, never 0 (untagged).
/// Two keys with one tag only make a forwarded request wait needlessly.
pub(super) fn key_tag(key: &[u8]) -> u64 {
    const SEEDS: [u64; 4] = [0x7261_6e67, 0x6361_6368, 0x6b65_7973, 0x7461_6773];
    let hasher = ahash::RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]);
    hasher.hash_one(key).max(1)
}
