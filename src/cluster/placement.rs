//! Placement under a cluster configuration: the ring built from a
//! [`ClusterConfig`], a key's R owners, and the order its reads try them (pure).
//!
//! One ring "server" per shard endpoint of every node that is on the ring (`up`
//! or `down`), named as ketama clients name it, so a client given the endpoints
//! agrees with the nodes on every key's primary. A key's R owners are the first R
//! distinct nodes met clockwise from the key's point; on each node the owning
//! shard is the one whose vnode was met. The first owner is the primary, and is
//! always [`Ring::owner`] of the key.

use std::ops::Deref;
use std::sync::Arc;

use super::config::{ClusterConfig, NodeState, REPLICAS_MAX};
use super::ring::{key_point, Owner, Ring, Server};

/// A key's owners, primary first: at most [`REPLICAS_MAX`], held inline so a
/// lookup on the request path does not allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owners {
    len: u8,
    owners: [Owner; REPLICAS_MAX],
}

impl Owners {
    fn new() -> Owners {
        Owners {
            len: 0,
            owners: [Owner { node: 0, shard: 0 }; REPLICAS_MAX],
        }
    }

    fn push(&mut self, owner: Owner) {
        assert!((self.len as usize) < REPLICAS_MAX);
        self.owners[self.len as usize] = owner;
        self.len += 1;
    }

    /// The first owner: the one that applies writes first and answers reads.
    pub fn primary(&self) -> Owner {
        self.owners[0]
    }
}

impl Deref for Owners {
    type Target = [Owner];

    fn deref(&self) -> &[Owner] {
        &self.owners[..self.len as usize]
    }
}

/// The ring of one epoch's configuration, built once and shared by the node's
/// shards with the configuration it came from.
#[derive(Clone, Debug)]
pub struct Placement {
    config: Arc<ClusterConfig>,
    ring: Ring,
}

/// The ring servers of `config`: every shard endpoint of every node on the ring,
/// `Owner { node: id, shard: index in the node's list }`.
pub fn ring_servers(config: &ClusterConfig) -> Vec<Server> {
    config
        .nodes()
        .iter()
        .filter(|node| node.state.is_on_ring())
        .flat_map(|node| {
            node.shards
                .iter()
                .enumerate()
                .map(|(shard, endpoint)| Server {
                    name: endpoint.ketama_name(),
                    owner: Owner {
                        node: node.id,
                        shard: shard as u32,
                    },
                })
        })
        .collect()
}

impl Placement {
    /// Builds the ring of `config` (every node computes the same one).
    pub fn new(config: Arc<ClusterConfig>) -> Placement {
        let ring = Ring::new(&ring_servers(&config), config.vnodes_per_shard());
        Placement { config, ring }
    }

    pub fn config(&self) -> &Arc<ClusterConfig> {
        &self.config
    }

    pub fn epoch(&self) -> u64 {
        self.config.epoch()
    }

    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The R owners of `key`, primary first.
    pub fn owners(&self, key: &[u8]) -> Owners {
        self.owners_of_point(key_point(key))
    }

    /// The owner of `key` on node `node` (the shard it is kept on there), if
    /// that node is one of its owners.
    pub fn owner_on(&self, key: &[u8], node: u32) -> Option<Owner> {
        self.owners(key).iter().copied().find(|o| o.node == node)
    }

    /// The R owners of a key whose point is `point` (hashed once, by the caller):
    /// the first R distinct nodes clockwise, each with the shard whose vnode was met.
    pub fn owners_of_point(&self, point: u32) -> Owners {
        let replicas = self.config.replicas();
        let mut owners = Owners::new();
        for owner in self.ring.clockwise_from(point) {
            if !owners.iter().any(|o| o.node == owner.node) {
                owners.push(owner);
                if owners.len() == replicas {
                    return owners;
                }
            }
        }
        // Validation guarantees R nodes on the ring, so the walk always ends above.
        unreachable!(
            "the ring of epoch {} has fewer than {replicas} nodes",
            self.epoch()
        );
    }

    /// The order in which a read of `key` tries its owners.
    pub fn read_order(&self, key: &[u8]) -> Owners {
        self.read_order_of_point(key_point(key))
    }

    /// The owners of `point` in the order reads try them: the primary, then the
    /// replicas in ring order, except that `down` owners come after every `up` one.
    pub fn read_order_of_point(&self, point: u32) -> Owners {
        let owners = self.owners_of_point(point);
        let is_down = |o: &Owner| {
            self.config
                .node(o.node)
                .is_some_and(|n| n.state == NodeState::Down)
        };
        let mut order = Owners::new();
        for &owner in owners.iter().filter(|o| !is_down(o)) {
            order.push(owner);
        }
        for &owner in owners.iter().filter(|o| is_down(o)) {
            order.push(owner);
        }
        order
    }
}

/// What a change of placement means for one node: whether it now owns keys it
/// did not own before (on the same shard), which it must fetch from the nodes
/// that hold them, and whether it no longer owns some it did, which it may
/// release once their new owners have them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Moves {
    pub gains: bool,
    pub loses: bool,
}

/// Compares `node`'s keys under `old` and `new`, exactly: the points of both
/// rings cut the key space into arcs on which each placement has one owner set,
/// and each arc is checked once.
pub fn moves(old: &Placement, new: &Placement, node: u32) -> Moves {
    let mut points: Vec<u32> = old
        .ring()
        .points()
        .iter()
        .chain(new.ring().points())
        .map(|&(point, _)| point)
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut moves = Moves::default();
    for point in points {
        let before = old.owners_of_point(point);
        let after = new.owners_of_point(point);
        let mine = |owners: &Owners, other: &Owners| {
            owners
                .iter()
                .any(|o| o.node == node && !other.iter().any(|x| x == o))
        };
        moves.gains |= mine(&after, &before);
        moves.loses |= mine(&before, &after);
        if moves.gains && moves.loses {
            break;
        }
    }
    moves
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::config::{ClusterSpec, Endpoint, NodeConfig, WriteAck};

    fn spec(nodes: u32, shards: u32, replicas: usize) -> ClusterSpec {
        ClusterSpec {
            nodes: (1..=nodes)
                .map(|id| NodeConfig {
                    id,
                    client_addr: Endpoint::parse(&format!("10.0.0.{id}:11211")).unwrap(),
                    shards: (0..shards)
                        .map(|s| Endpoint::parse(&format!("10.0.0.{id}:{}", 11300 + s)).unwrap())
                        .collect(),
                    state: NodeState::Up,
                })
                .collect(),
            replicas,
            vnodes_per_shard: 160,
            write_ack: WriteAck::Quorum,
            acceptors: vec![1],
            next_node_id: 0,
        }
    }

    #[test]
    fn owners_fit_inline_and_are_small() {
        assert_eq!(std::mem::size_of::<Owners>(), 4 + 8 * REPLICAS_MAX);
    }

    #[test]
    fn a_down_primary_is_read_last() {
        let mut s = spec(3, 2, 3);
        let up = Placement::new(Arc::new(ClusterConfig::new(1, s.clone()).unwrap()));
        let owners = up.owners(b"k");
        assert_eq!(up.read_order(b"k"), owners);
        let primary = owners.primary().node;
        s.nodes.iter_mut().find(|n| n.id == primary).unwrap().state = NodeState::Down;
        let down = Placement::new(Arc::new(ClusterConfig::new(2, s).unwrap()));
        assert_eq!(down.owners(b"k"), owners, "a node going down moves no keys");
        let order = down.read_order(b"k");
        assert_eq!(&order[..2], &owners[1..]);
        assert_eq!(order[2], owners[0]);
    }

    #[test]
    fn a_keys_owner_on_a_node_is_among_its_owners_or_none() {
        let p = Placement::new(Arc::new(ClusterConfig::new(1, spec(3, 2, 2)).unwrap()));
        let owners = p.owners(b"k");
        for owner in owners.iter() {
            assert_eq!(p.owner_on(b"k", owner.node), Some(*owner));
        }
        let other = (1..=3)
            .find(|id| owners.iter().all(|o| o.node != *id))
            .unwrap();
        assert_eq!(p.owner_on(b"k", other), None);
    }

    #[test]
    fn joining_nodes_own_nothing() {
        let mut s = spec(3, 1, 2);
        s.nodes[2].state = NodeState::Joining;
        let p = Placement::new(Arc::new(ClusterConfig::new(1, s).unwrap()));
        assert!(p.ring().points().iter().all(|&(_, o)| o.node != 3));
        assert_eq!(p.ring().points().len(), 2 * 160);
    }

    #[test]
    fn moves_name_exactly_the_nodes_whose_keys_change() {
        let at =
            |epoch, s: ClusterSpec| Placement::new(Arc::new(ClusterConfig::new(epoch, s).unwrap()));
        let three = at(1, spec(3, 2, 2));
        // The same ring again: nothing moves.
        for id in 1..=3 {
            assert_eq!(moves(&three, &at(2, spec(3, 2, 2)), id), Moves::default());
        }
        // A node marked down keeps its keys.
        let mut down = spec(3, 2, 2);
        down.nodes[0].state = NodeState::Down;
        assert_eq!(moves(&three, &at(2, down), 1), Moves::default());
        // A fourth node gains keys and loses none; some old owner loses keys.
        let four = at(2, spec(4, 2, 2));
        assert_eq!(
            moves(&three, &four, 4),
            Moves {
                gains: true,
                loses: false
            }
        );
        assert!((1..=3).any(|id| moves(&three, &four, id).loses));
        assert!((1..=3).all(|id| !moves(&three, &four, id).gains));
        // One more copy of every key: every node gains, none loses.
        for id in 1..=3 {
            assert_eq!(
                moves(&three, &at(2, spec(3, 2, 3)), id),
                Moves {
                    gains: true,
                    loses: false
                }
            );
        }
        // Checked against every key of a sample: a node that gains owns some
        // sampled key it did not own before.
        let keys: Vec<String> = (0..20_000).map(|i| format!("key:{i}")).collect();
        for id in 1..=4 {
            let m = moves(&three, &four, id);
            let gained = keys.iter().any(|k| {
                four.owners(k.as_bytes()).iter().any(|o| o.node == id)
                    && !three.owners(k.as_bytes()).iter().any(|o| o.node == id)
            });
            let lost = keys.iter().any(|k| {
                three.owners(k.as_bytes()).iter().any(|o| o.node == id)
                    && !four.owners(k.as_bytes()).iter().any(|o| o.node == id)
            });
            assert_eq!((m.gains, m.loses), (gained, lost), "node {id}");
        }
    }
}
