//! Where a keyed request goes, as routing decides it (pure): the shard and
//! role that apply it here, the node it goes to, or the refusal that answers it.

use super::ring::Owner;
use super::wire;

/// How a shard applies a keyed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A read, or any request outside a cluster.
    Plain,
    /// A write this node applies first: the resulting item goes to the other owners.
    Primary,
    /// An item the primary applied.
    Replica,
    /// An item a peer (id; 0: unknown) pushes to this recovering node.
    Copy(u32),
    /// An item a node that was cut off changed meanwhile.
    Merge(u32),
}

/// Where one keyed request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A shard of this node, applying it in this role.
    Shard(u32, Role),
    /// Another node (or this one, through its own endpoint, on a retry).
    Peer(Owner),
    /// Answered here with a refusal.
    Refuse(Refusal),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAnOwner,
    Recovering,
    NoOwnerReachable,
    Epoch(u64),
}

impl Refusal {
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Refusal::NotAnOwner => out.extend_from_slice(wire::NOT_AN_OWNER),
            Refusal::Recovering => out.extend_from_slice(wire::RECOVERING),
            Refusal::NoOwnerReachable => out.extend_from_slice(wire::NO_OWNER_REACHABLE),
            Refusal::Epoch(epoch) => {
                out.extend_from_slice(wire::EPOCH_MISMATCH_PREFIX);
                out.extend_from_slice(epoch.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}
