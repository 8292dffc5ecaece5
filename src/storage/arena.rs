//! The arena: fixed-size segments allocated up front, kept in FIFO order (pure).
//!
//! Items are appended to the newest segment (the head). When the head is full, the
//! store takes a free segment if the memory limit allows, or reclaims the oldest
//! segment (see `eviction.rs`), which then becomes the head. The arena never grows
//! with the number of items; it grows only if `cache_memlimit` raises the limit
//! past what was allocated.
//!
//! An item's address is its byte offset in the arena divided by
//! [`ITEM_ALIGN_BYTES`], in a `u32`: so one store addresses up to 32 GiB.

use std::collections::VecDeque;

use super::item::ITEM_ALIGN_BYTES;

/// An item address (arena byte offset / 8).
pub type Addr = u32;

/// No item: the end of an index chain.
pub const NIL: Addr = u32::MAX;

/// Segment size unless `-I` asks for more.
pub const SEGMENT_BYTES_DEFAULT: usize = 1024 * 1024;

/// The most arena one store can address with a `u32` of 8-byte units.
pub const ARENA_BYTES_MAX: usize = (u32::MAX as usize) * ITEM_ALIGN_BYTES;

#[derive(Clone, Copy, Debug, Default)]
pub struct SegmentMeta {
    /// Bytes written from the start of the segment (items, live or dead).
    pub write_bytes: usize,
    /// Bytes of linked items in the segment.
    pub live_bytes: usize,
}

pub struct Arena {
    segments: Vec<Box<[u8]>>,
    pub meta: Vec<SegmentMeta>,
    /// Segments in use, oldest first; the back is the head that takes new items.
    pub fifo: VecDeque<u32>,
    /// Segments allocated but not in use.
    pub free: Vec<u32>,
    seg_shift: u32,
    /// How many segments the current memory limit allows in use.
    pub usable: usize,
}

impl Arena {
    /// An arena of `segment_count` segments of `segment_bytes` (a power of two).
    pub fn new(segment_bytes: usize, segment_count: usize) -> Arena {
        assert!(segment_bytes.is_power_of_two() && segment_bytes >= 4096);
        assert!(segment_count >= 1);
        let mut arena = Arena {
            segments: Vec::with_capacity(segment_count),
            meta: Vec::with_capacity(segment_count),
            fifo: VecDeque::with_capacity(segment_count),
            free: Vec::with_capacity(segment_count),
            seg_shift: segment_bytes.trailing_zeros(),
            usable: segment_count,
        };
        arena.grow_to(segment_count);
        arena
    }

    /// Allocates segments until there are `segment_count`.
    pub fn grow_to(&mut self, segment_count: usize) {
        assert!(segment_count * self.segment_bytes() <= ARENA_BYTES_MAX);
        while self.segments.len() < segment_count {
            let id = self.segments.len() as u32;
            self.segments
                .push(vec![0u8; self.segment_bytes()].into_boxed_slice());
            self.meta.push(SegmentMeta::default());
            // Lowest ids are taken first.
            self.free.insert(0, id);
        }
    }

    pub fn segment_bytes(&self) -> usize {
        1 << self.seg_shift
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes allocated for items.
    pub fn allocated_bytes(&self) -> usize {
        self.segments.len() << self.seg_shift
    }

    pub fn addr(&self, segment: u32, offset: usize) -> Addr {
        let byte = ((segment as usize) << self.seg_shift) + offset;
        (byte / ITEM_ALIGN_BYTES) as Addr
    }

    /// (segment, byte offset in it).
    pub fn locate(&self, addr: Addr) -> (usize, usize) {
        debug_assert_ne!(addr, NIL);
        let byte = addr as usize * ITEM_ALIGN_BYTES;
        (byte >> self.seg_shift, byte & (self.segment_bytes() - 1))
    }

    /// The item at `addr` and whatever follows it in its segment.
    pub fn item(&self, addr: Addr) -> &[u8] {
        let (seg, off) = self.locate(addr);
        &self.segments[seg][off..]
    }

    pub fn item_mut(&mut self, addr: Addr) -> &mut [u8] {
        let (seg, off) = self.locate(addr);
        &mut self.segments[seg][off..]
    }

    pub fn segment_mut(&mut self, segment: u32) -> &mut [u8] {
        &mut self.segments[segment as usize]
    }

    /// Takes `bytes` at the end of the head segment, if they fit there.
    pub fn bump(&mut self, bytes: usize) -> Option<Addr> {
        let head = *self.fifo.back()?;
        let segment_bytes = self.segment_bytes();
        let meta = &mut self.meta[head as usize];
        if segment_bytes - meta.write_bytes < bytes {
            return None;
        }
        let offset = meta.write_bytes;
        meta.write_bytes += bytes;
        Some(self.addr(head, offset))
    }
}
