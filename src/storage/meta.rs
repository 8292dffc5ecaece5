//! What the meta protocol needs of the store beyond the text commands (pure):
//! looking an item up without bumping it, then reading and changing its meta
//! state (fetched, stale, recache token sent, TTL, CAS) in the order the
//! request's flags ask.
//!
//! A [`Slot`] names a live item found by [`Store::find`]; it stays valid until the
//! next call that stores, deletes or unlinks (those may move or drop items).

use super::arena::Addr;
use super::item::{
    self, Header, BIT_ACCESSED, BIT_FETCHED, BIT_KEY_BINARY, BIT_STALE, BIT_TOKEN_SENT,
};
use super::{ItemView, Miss, Store};

/// A live item found by [`Store::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    addr: Addr,
}

/// An item and its meta state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaView<'s> {
    pub item: ItemView<'s>,
    /// Read since stored (`h`).
    pub fetched: bool,
    /// Invalidated (`X`).
    pub stale: bool,
    /// The recache token has been handed out (`Z`).
    pub token_sent: bool,
    /// The key was stored from base64.
    pub key_binary: bool,
}

impl Store {
    /// Looks a key up without marking it accessed (expired and flushed items are
    /// dropped, as any lookup does).
    pub fn find(&mut self, key: &[u8], now: u32) -> Result<Slot, Miss> {
        let hash = self.index.hash(key);
        let (_, addr) = self.find_live(key, hash, now)?;
        Ok(Slot { addr })
    }

    pub fn meta_view(&self, slot: Slot) -> MetaView<'_> {
        let bits = item::bits(self.arena.item(slot.addr));
        MetaView {
            item: self.view(slot.addr),
            fetched: bits & BIT_FETCHED != 0,
            stale: bits & BIT_STALE != 0,
            token_sent: bits & BIT_TOKEN_SENT != 0,
            key_binary: bits & BIT_KEY_BINARY != 0,
        }
    }

    /// What a read does to an item: fetched, accessed, last access now.
    pub fn bump(&mut self, slot: Slot, now: u32) {
        let it = self.arena.item_mut(slot.addr);
        item::set_bits(it, item::bits(it) | BIT_ACCESSED | BIT_FETCHED);
        item::set_atime(it, now);
    }

    /// A new relative expiry (0: never).
    pub fn set_exptime(&mut self, slot: Slot, exptime: u32) {
        item::set_exptime(self.arena.item_mut(slot.addr), exptime);
    }

    pub fn set_cas(&mut self, slot: Slot, cas: u64) {
        item::set_cas(self.arena.item_mut(slot.addr), cas);
    }

    /// Sets or clears the stale mark and the recache-token mark.
    pub fn set_marks(&mut self, slot: Slot, stale: bool, token_sent: bool) {
        let it = self.arena.item_mut(slot.addr);
        let mut bits = item::bits(it) & !(BIT_STALE | BIT_TOKEN_SENT);
        if stale {
            bits |= BIT_STALE;
        }
        if token_sent {
            bits |= BIT_TOKEN_SENT;
        }
        item::set_bits(it, bits);
    }

    /// Hands out the next CAS unique, as a store would.
    pub fn new_cas(&mut self) -> u64 {
        self.take_cas()
    }

    /// Bytes memcached 1.6 would count for this item (`ITEM_ntotal`, as `me` shows it).
    pub fn memcached_item_bytes(&self, slot: Slot) -> usize {
        let h = Header::read(self.arena.item(slot.addr));
        crate::limits::MEMCACHED_ITEM_OVERHEAD_BYTES
            + h.key_len as usize
            + 1
            + h.value_len as usize
            + 2
            + if h.flags == 0 { 0 } else { 4 }
    }
}
