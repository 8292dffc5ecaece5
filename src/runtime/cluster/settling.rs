//! What a node may read, hand on and be primary for while it settles: after a
//! start, a pause or a rejoin it recovers, and while keys move to it it copies
//! them. Here are the flags that say so, the keys written meanwhile that
//! copies never overwrite (see `note_written`), the peers not copied from yet,
//! and the noticing of a pause or a rejoin. No I/O: shared flags and locks only.

use super::node::ClusterNode;
use crate::cluster::ring::Owner;
use crate::cluster::route::Role;
use crate::limits::{PEER_PROBE_INTERVAL_MS, RECOVERY_WRITTEN_KEYS_MAX};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

impl ClusterNode {
    /// Raises `flag` (a recovery for the watch to run) and marks the node
    /// recovering until that recovery ends.
    pub(super) fn want_recovery(&self, flag: &AtomicBool) {
        let _order = self.recovery_lock.lock().expect("recovery lock");
        flag.store(true, Ordering::Release);
        self.recovering.store(true, Ordering::Release);
    }

    /// Ends a recovery: the node serves its own reads again unless another
    /// recovery was asked for meanwhile.
    pub(super) fn recovery_done(&self) {
        let _order = self.recovery_lock.lock().expect("recovery lock");
        if !self.migration_wanted.load(Ordering::Acquire)
            && !self.takeover_wanted.load(Ordering::Acquire)
            && !self.recovery_wanted.load(Ordering::Acquire)
        {
            self.recovering.store(false, Ordering::Release);
            self.settling_after_pause.store(false, Ordering::Release);
            self.migrating.store(false, Ordering::Release);
            self.migrating_from.write().expect("migration lock").clear();
        }
    }

    /// Whether this node is copying what it missed or what moved to it: the
    /// keys written meanwhile are kept from being overwritten by the copies.
    pub fn is_copying(&self) -> bool {
        self.is_recovering() || self.keys_moving_here()
    }

    /// Whether keys moved to this node and it is copying them.
    pub(super) fn keys_moving_here(&self) -> bool {
        self.migrating.load(Ordering::Acquire)
    }

    /// Whether this node's copy of `key` on shard `owner` is one to hand to
    /// others: `owner` owns the key now and has it (it is not still copying
    /// it), or owned it before the last move.
    pub fn holds_current(
        &self,
        key: &[u8],
        owners: &crate::cluster::placement::Owners,
        owner: Owner,
    ) -> bool {
        (owners.contains(&owner) && self.copy_is_current(key, owner))
            || self
                .view()
                .previous
                .as_ref()
                .is_some_and(|p| p.owners(key).contains(&owner))
    }

    /// Whether this node's copy of `key` on shard `owner` may be read: not
    /// while it recovers, and while keys move to it, only if it owned `key`
    /// on that shard before they began to move.
    pub fn may_read(&self, key: &[u8], owner: Owner) -> bool {
        self.copy_is_current(key, owner) && !self.lacks_shared(key)
    }

    /// Whether this node's copy of `key` on shard `owner`, if it has one, is
    /// as new as the node knows (a node that lacks what a peer holds may still
    /// hand its own copies to others).
    pub(super) fn copy_is_current(&self, key: &[u8], owner: Owner) -> bool {
        if self.is_recovering() {
            return false;
        }
        if !self.migrating.load(Ordering::Acquire) {
            return true;
        }
        self.migrating_from
            .read()
            .expect("migration lock")
            .iter()
            .all(|placement| placement.owners(key).contains(&owner))
            || self.was_written(key)
    }

    /// Notes that `key` was written here in `role` (`Primary` or `Replica`)
    /// while the node copies: copies never overwrite it.
    ///
    /// Not a replicated item while no keys move here: its primary has
    /// settled, so its CAS unique is above that of any older state of the key,
    /// and a copy is taken or refused by CAS (see `replication::apply`). A
    /// copy may be newer than the item: the primary wrote the key again while
    /// it could not reach this node, and pushes that write (its hint) as a
    /// copy. Refused, the write would be missing here when this node is
    /// primary again. While keys move here, a primary that has not copied a
    /// key it just gained gives it a unique from its own counter, which may
    /// be below an older copy's: then only the note keeps the copy out.
    pub(super) fn note_written(&self, key: &[u8], role: Role) {
        assert!(
            matches!(role, Role::Primary | Role::Replica),
            "only writes made here are noted, not {role:?}"
        );
        if role == Role::Replica && !self.migrating.load(Ordering::Acquire) {
            return;
        }
        self.written_any.store(true, Ordering::Release);
        let mut written = self.written.lock().expect("written lock");
        if written.len() < RECOVERY_WRITTEN_KEYS_MAX {
            written.insert(key.to_vec());
        } else if written.len() == RECOVERY_WRITTEN_KEYS_MAX {
            log::warn!(
                "more than {RECOVERY_WRITTEN_KEYS_MAX} keys written during recovery: copies may overwrite newer writes"
            );
            written.insert(Vec::new());
        }
    }

    /// Whether `key` was written here since the node began to copy.
    pub(super) fn was_written(&self, key: &[u8]) -> bool {
        self.written_any.load(Ordering::Acquire)
            && self.written.lock().expect("written lock").contains(key)
    }

    pub fn is_recovering(&self) -> bool {
        self.recovering.load(Ordering::Acquire)
    }

    /// Whether `key` is shared with a peer whose items this node has not
    /// copied yet (see `unpulled`); one that a decision marked down does not
    /// count, since it is not coming back with them.
    pub fn lacks_shared(&self, key: &[u8]) -> bool {
        if !self.unpulled_any.load(Ordering::Acquire) {
            return false;
        }
        let view = self.view();
        let unpulled = self.unpulled.lock().expect("unpulled lock");
        view.placement.owners(key).iter().any(|o| {
            unpulled
                .get(&o.node)
                .is_some_and(|since| since.elapsed() < self.unpulled_patience)
                && view
                    .config()
                    .node(o.node)
                    .is_some_and(|n| n.state != crate::cluster::config::NodeState::Down)
        })
    }

    /// Records whether a copy of every item from `peer` was done.
    pub(super) fn set_pulled(&self, peer: u32, pulled: bool) {
        let mut unpulled = self.unpulled.lock().expect("unpulled lock");
        if pulled {
            unpulled.remove(&peer);
        } else if let std::collections::hash_map::Entry::Vacant(entry) = unpulled.entry(peer) {
            entry.insert(Instant::now());
            log::warn!(
                "node {peer} did not answer this node's copy of the items they share: \
                 they are neither read nor written here until it answers and they are \
                 copied, or for {:?} at most",
                self.unpulled_patience
            );
        }
        self.unpulled_any
            .store(!unpulled.is_empty(), Ordering::Release);
    }

    /// Whether some keys are neither read nor written here for now, for want
    /// of a peer's items (see `unpulled`).
    pub(super) fn lacks_any(&self) -> bool {
        self.unpulled_any.load(Ordering::Acquire)
            && self
                .unpulled
                .lock()
                .expect("unpulled lock")
                .values()
                .any(|since| since.elapsed() < self.unpulled_patience)
    }

    pub(super) fn is_unpulled(&self, peer: u32) -> bool {
        self.unpulled_any.load(Ordering::Acquire)
            && self
                .unpulled
                .lock()
                .expect("unpulled lock")
                .contains_key(&peer)
    }

    /// Notices whether this process was paused (the watch, due every
    /// [`PEER_PROBE_INTERVAL_MS`], has not ticked for much longer) and returns
    /// how many pauses have been noticed. Called by the watch and by peer
    /// connections before they apply anything, so that writes a sender timed
    /// out on during the pause are not applied after it.
    pub fn pauses(&self) -> u64 {
        self.notice_pause();
        self.pauses_noticed()
    }

    /// How many pauses have been noticed so far, without looking for a new one:
    /// what a connection records when it opens, so that a pause noticed later
    /// (even one that ended just before it was accepted) closes it.
    pub fn pauses_noticed(&self) -> u64 {
        self.pauses.load(Ordering::Acquire)
    }

    pub(super) fn notice_pause(&self) {
        let now = self.now_ms();
        let seen = self.pauses.load(Ordering::Acquire);
        let last = self.last_tick_ms.load(Ordering::Acquire);
        let late = PEER_PROBE_INTERVAL_MS + self.peer_timeout.as_millis() as u64;
        if now <= last + late {
            return;
        }
        // Settling and recovering first, on whichever thread saw the pause
        // (a shard may take a request before the watch ticks again): nothing
        // read after the pause is served from copies it may have missed writes
        // to. Then the time, then the count: whoever sees the new count sees
        // when.
        self.settling_after_pause.store(true, Ordering::Release);
        self.want_recovery(&self.recovery_wanted);
        self.pause_noticed_ms.store(now + 1, Ordering::Release);
        if self
            .pauses
            .compare_exchange(seen, seen + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.last_tick_ms.store(now, Ordering::Release);
            log::warn!(
                "this node was paused for {} ms: recovering the writes it missed",
                now - last
            );
        }
    }

    /// Notices that this node, cut off from the majority before, reaches it
    /// again: the others wrote without it meanwhile, so it settles and copies
    /// what it missed (as after a pause) before it serves its copies or is
    /// primary again.
    pub(super) fn notice_rejoin(&self) {
        if !self.was_cut_off.load(Ordering::Acquire)
            || !self.was_cut_off.swap(false, Ordering::AcqRel)
        {
            return;
        }
        self.settling_after_pause.store(true, Ordering::Release);
        self.want_recovery(&self.recovery_wanted);
        log::warn!(
            "this node reaches a majority of the members again: recovering the writes it missed"
        );
    }

    /// Whether a connection from a peer, accepted at `accepted_ms` when
    /// `pauses_at_accept` pauses had been noticed, may carry requests its sender
    /// gave up on during a pause: it was open across one, or it was made during
    /// one (and accepted just after it was noticed). Forwarded requests and
    /// replicated items on it are not applied; the connection is closed and the
    /// sender, seeing it fail, keeps hints instead.
    pub fn opened_across_pause(&self, accepted_ms: u64, pauses_at_accept: u64) -> bool {
        if self.pauses() != pauses_at_accept {
            return true;
        }
        let noticed = self.pause_noticed_ms.load(Ordering::Acquire);
        noticed != 0 && accepted_ms < noticed - 1 + self.peer_timeout.as_millis() as u64
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cluster::auth::Secret;
    use crate::cluster::config::ClusterConfig;
    use std::time::Duration;

    /// Node 1 of three that each own every key (R=3, `quorum`), as it starts:
    /// recovering.
    pub(in crate::runtime::cluster) fn starting_node() -> ClusterNode {
        let mut file = String::from("replicas = 3\nwrite_ack = \"quorum\"\n");
        for id in 1..=3 {
            file.push_str(&format!(
                "[[node]]\nid = {id}\naddr = \"127.0.0.{id}:1\"\nshards = [\"127.0.0.{id}:2\"]\n"
            ));
        }
        let config = ClusterConfig::from_file_text(&file).expect("a cluster file");
        ClusterNode::new(
            config,
            1,
            Duration::from_millis(250),
            1000,
            Secret::from_bytes(&[7; 32]),
            Duration::from_secs(1),
        )
        .expect("a node")
    }

    #[test]
    fn a_write_made_here_as_primary_while_recovering_is_kept_from_copies() {
        let node = starting_node();
        assert!(node.is_recovering());
        node.note_written(b"k", Role::Primary);
        assert!(node.was_written(b"k"));
    }

    #[test]
    fn a_replicated_item_taken_while_recovering_leaves_a_newer_copy_to_the_cas_order() {
        // The primary that stood in for this node sent it an item of `k`
        // during its recovery, then wrote `k` again while this node was TKO
        // there (a hint). The hint comes back as a copy with a higher CAS
        // unique: refused, this node would be primary again without that
        // write (incr results counted twice from one value).
        let node = starting_node();
        node.note_written(b"k", Role::Replica);
        assert!(!node.was_written(b"k"));
    }

    #[test]
    fn a_replicated_item_taken_while_keys_move_here_is_kept_from_copies() {
        // A primary that has not copied a key it just gained gives it a
        // unique from its own counter, which may be below an older copy's.
        let node = starting_node();
        node.migrating.store(true, Ordering::Release);
        node.note_written(b"k", Role::Replica);
        assert!(node.was_written(b"k"));
    }
}
