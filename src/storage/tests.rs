//! The store's behaviour, each case checked against memcached 1.6.18 where it
//! is a protocol rule.

use super::*;

const MB: usize = 1024 * 1024;

fn config(memory_limit_bytes: usize, when_full: WhenFull) -> StoreConfig {
    StoreConfig {
        memory_limit_bytes,
        item_size_max_bytes: MB,
        when_full,
        cas_suffix: 0,
        cas_suffix_bits: 0,
        clock_cas: false,
    }
}

fn store(memory_limit_bytes: usize) -> Store {
    Store::new(config(memory_limit_bytes, WhenFull::Evict))
}

fn set(s: &mut Store, key: &[u8], value: &[u8], now: u32) -> StoreOutcome {
    s.store(StoreMode::Set, key, 0, 0, value, now)
}

fn value_of(s: &mut Store, key: &[u8], now: u32) -> Option<Vec<u8>> {
    s.get(key, now).ok().map(|v| v.value.to_vec())
}

#[test]
fn a_set_item_reads_back_with_its_flags_and_cas() {
    let mut s = store(4 * MB);
    let StoreOutcome::Stored(cas) = s.store(StoreMode::Set, b"k", 42, 0, b"hello", 10) else {
        panic!("not stored");
    };
    let v = s.get(b"k", 11).unwrap();
    assert_eq!(
        (v.key, v.value, v.flags, v.cas, v.atime),
        (&b"k"[..], &b"hello"[..], 42, cas, 11)
    );
    assert_eq!(s.get(b"other", 11), Err(Miss::Absent));
}

#[test]
fn set_replaces_and_counts_items_and_bytes() {
    let mut s = store(4 * MB);
    set(&mut s, b"k", b"one", 1);
    set(&mut s, b"k", b"two!", 1);
    assert_eq!(value_of(&mut s, b"k", 1).unwrap(), b"two!");
    let st = s.stats();
    assert_eq!(st.curr_items, 1);
    assert_eq!(st.total_items, 2);
    assert_eq!(st.bytes, item_bytes(1, 4) as u64);
    assert_eq!(st.limit_maxbytes, 4 * MB as u64);
}

#[test]
fn add_stores_only_when_the_key_is_absent() {
    let mut s = store(4 * MB);
    assert!(matches!(
        s.store(StoreMode::Add, b"k", 0, 0, b"a", 1),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(
        s.store(StoreMode::Add, b"k", 0, 0, b"b", 1),
        StoreOutcome::NotStored
    );
    assert_eq!(value_of(&mut s, b"k", 1).unwrap(), b"a");
}

#[test]
fn add_succeeds_over_an_expired_item() {
    let mut s = store(4 * MB);
    s.store(StoreMode::Set, b"k", 0, 5, b"a", 1);
    assert!(matches!(
        s.store(StoreMode::Add, b"k", 0, 0, b"b", 5),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(value_of(&mut s, b"k", 5).unwrap(), b"b");
}

#[test]
fn replace_append_and_prepend_need_the_key() {
    let mut s = store(4 * MB);
    for mode in [StoreMode::Replace, StoreMode::Append, StoreMode::Prepend] {
        assert_eq!(s.store(mode, b"k", 0, 0, b"x", 1), StoreOutcome::NotStored);
    }
    assert_eq!(s.get(b"k", 1), Err(Miss::Absent));
    set(&mut s, b"k", b"mid", 1);
    assert!(matches!(
        s.store(StoreMode::Replace, b"k", 3, 0, b"MID", 1),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(s.get(b"k", 1).unwrap().flags, 3);
}

#[test]
fn append_and_prepend_keep_the_old_flags_and_expiry() {
    let mut s = store(4 * MB);
    s.store(StoreMode::Set, b"k", 7, 100, b"mid", 1);
    assert!(matches!(
        s.store(StoreMode::Append, b"k", 9, 0, b">>", 2),
        StoreOutcome::Stored(_)
    ));
    assert!(matches!(
        s.store(StoreMode::Prepend, b"k", 9, 0, b"<<", 3),
        StoreOutcome::Stored(_)
    ));
    let v = s.get(b"k", 4).unwrap();
    assert_eq!((v.value, v.flags, v.exptime), (&b"<<mid>>"[..], 7, 100));
}

#[test]
fn cas_stores_only_with_the_current_unique() {
    let mut s = store(4 * MB);
    assert_eq!(
        s.store(StoreMode::Cas(1), b"k", 0, 0, b"x", 1),
        StoreOutcome::NotFound
    );
    let StoreOutcome::Stored(cas) = set(&mut s, b"k", b"a", 1) else {
        panic!()
    };
    assert_eq!(
        s.store(StoreMode::Cas(cas + 1), b"k", 0, 0, b"b", 1),
        StoreOutcome::Exists
    );
    let StoreOutcome::Stored(cas2) = s.store(StoreMode::Cas(cas), b"k", 0, 0, b"c", 1) else {
        panic!()
    };
    assert_ne!(cas, cas2);
    assert_eq!(
        s.store(StoreMode::Cas(cas), b"k", 0, 0, b"d", 1),
        StoreOutcome::Exists
    );
    assert_eq!(value_of(&mut s, b"k", 1).unwrap(), b"c");
}

#[test]
fn cas_uniques_grow_from_one_and_carry_the_suffix_bits() {
    let mut s = Store::new(StoreConfig {
        cas_suffix: 0b101,
        cas_suffix_bits: 3,
        ..config(4 * MB, WhenFull::Evict)
    });
    let mut seen = Vec::new();
    for i in 0..5u8 {
        let StoreOutcome::Stored(cas) = set(&mut s, &[i], b"v", 1) else {
            panic!()
        };
        seen.push(cas);
    }
    assert_eq!(seen, [1, 2, 3, 4, 5].map(|n: u64| (n << 3) | 0b101));
    // A failed incr takes no unique; a successful one takes the next.
    assert_eq!(s.arith(ArithOp::Incr, &[0], 1, 1), ArithOutcome::NonNumeric);
    set(&mut s, b"n", b"1", 1);
    s.arith(ArithOp::Incr, b"n", 1, 1);
    assert_eq!(s.get(b"n", 1).unwrap().cas, (7 << 3) | 0b101);
}

#[test]
fn an_item_is_expired_when_its_exptime_is_now() {
    let mut s = store(4 * MB);
    s.store(StoreMode::Set, b"k", 0, 10, b"v", 1);
    assert!(s.get(b"k", 9).is_ok());
    assert_eq!(s.get(b"k", 10), Err(Miss::Expired));
    // Unlinked by that miss: the next lookup finds nothing at all.
    assert_eq!(s.get(b"k", 10), Err(Miss::Absent));
    assert_eq!(s.stats().curr_items, 0);
}

#[test]
fn touch_sets_the_expiry_and_keeps_the_cas() {
    let mut s = store(4 * MB);
    let StoreOutcome::Stored(cas) = s.store(StoreMode::Set, b"k", 0, 10, b"v", 1) else {
        panic!()
    };
    let v = s.touch(b"k", 20, 5).unwrap();
    assert_eq!((v.exptime, v.cas, v.atime), (20, cas, 5));
    assert!(s.get(b"k", 15).is_ok());
    assert_eq!(s.touch(b"k", 30, 20), Err(Miss::Expired));
    assert_eq!(s.touch(b"nope", 30, 20), Err(Miss::Absent));
}

#[test]
fn delete_unlinks_and_reports_a_missing_key() {
    let mut s = store(4 * MB);
    set(&mut s, b"k", b"v", 1);
    assert_eq!(s.delete(b"k", 1), DeleteOutcome::Deleted);
    assert_eq!(s.delete(b"k", 1), DeleteOutcome::NotFound);
    assert_eq!(s.get(b"k", 1), Err(Miss::Absent));
    s.store(StoreMode::Set, b"e", 0, 2, b"v", 1);
    assert_eq!(s.delete(b"e", 2), DeleteOutcome::NotFound);
}

#[test]
fn incr_wraps_and_decr_stops_at_zero() {
    let mut s = store(4 * MB);
    set(&mut s, b"n", b"18446744073709551615", 1);
    assert_eq!(s.arith(ArithOp::Incr, b"n", 2, 1), ArithOutcome::Value(1));
    assert_eq!(value_of(&mut s, b"n", 1).unwrap(), b"1                   ");
    set(&mut s, b"d", b"5", 1);
    assert_eq!(s.arith(ArithOp::Decr, b"d", 9, 1), ArithOutcome::Value(0));
    assert_eq!(
        s.arith(ArithOp::Incr, b"missing", 1, 1),
        ArithOutcome::NotFound
    );
    set(&mut s, b"x", b"12abc", 1);
    assert_eq!(s.arith(ArithOp::Incr, b"x", 1, 1), ArithOutcome::NonNumeric);
}

#[test]
fn a_shorter_result_is_written_in_place_padded_with_spaces() {
    let mut s = store(4 * MB);
    let StoreOutcome::Stored(cas) = s.store(StoreMode::Set, b"n", 5, 0, b"10", 1) else {
        panic!()
    };
    assert_eq!(s.arith(ArithOp::Decr, b"n", 1, 1), ArithOutcome::Value(9));
    let v = s.get(b"n", 1).unwrap();
    assert_eq!((v.value, v.flags), (&b"9 "[..], 5));
    assert_ne!(v.cas, cas);
    assert_eq!(s.stats().total_items, 1);
}

#[test]
fn a_longer_result_makes_a_new_item_with_the_old_flags_and_expiry() {
    let mut s = store(4 * MB);
    s.store(StoreMode::Set, b"n", 5, 50, b"99", 1);
    assert_eq!(s.arith(ArithOp::Incr, b"n", 1, 1), ArithOutcome::Value(100));
    let v = s.get(b"n", 1).unwrap();
    assert_eq!((v.value, v.flags, v.exptime), (&b"100"[..], 5, 50));
    assert_eq!(s.stats().curr_items, 1);
}

#[test]
fn flush_all_invalidates_what_was_stored_before_it_but_not_after_in_the_same_second() {
    let mut s = store(4 * MB);
    set(&mut s, b"old", b"v", 100);
    s.flush(100, 100);
    set(&mut s, b"new", b"v", 100);
    assert_eq!(s.get(b"old", 100), Err(Miss::Flushed));
    assert!(s.get(b"new", 100).is_ok());
    assert!(s.get(b"new", 101).is_ok());
    assert_eq!(s.get(b"old", 101), Err(Miss::Absent));
}

#[test]
fn a_delayed_flush_waits_then_invalidates_what_was_updated_before_it() {
    let mut s = store(4 * MB);
    set(&mut s, b"a", b"v", 100);
    // flush_all 10 at 100: memcached keeps oldest_live = 109.
    s.flush(110, 100);
    assert!(s.get(b"a", 105).is_ok());
    set(&mut s, b"b", b"v", 108);
    assert!(s.get(b"a", 108).is_ok());
    assert_eq!(s.get(b"a", 109), Err(Miss::Flushed));
    assert_eq!(s.get(b"b", 109), Err(Miss::Flushed));
    set(&mut s, b"c", b"v", 110);
    assert!(s.get(b"c", 110).is_ok());
}

#[test]
fn a_delayed_flush_does_not_bring_back_what_an_earlier_flush_removed() {
    let mut s = store(4 * MB);
    set(&mut s, b"gone", b"v", 100);
    s.flush(100, 100);
    // flush_all 1000, a moment later: its time is in the future.
    s.flush(1100, 100);
    assert_eq!(s.get(b"gone", 100), Err(Miss::Flushed));
    set(&mut s, b"kept", b"v", 100);
    assert!(s.get(b"kept", 101).is_ok());
}

#[test]
fn a_failed_set_unlinks_the_old_value() {
    let mut s = store(MB);
    set(&mut s, b"k", b"v", 1);
    let big = vec![b'x'; 2 * MB];
    assert_eq!(set(&mut s, b"k", &big, 1), StoreOutcome::TooLarge);
    assert_eq!(s.get(b"k", 1), Err(Miss::Absent));
    // Other modes leave it alone.
    set(&mut s, b"k", b"v", 1);
    assert_eq!(
        s.store(StoreMode::Replace, b"k", 0, 0, &big, 1),
        StoreOutcome::TooLarge
    );
    assert!(s.get(b"k", 1).is_ok());
}

#[test]
fn every_item_that_fits_under_the_item_size_limit_fits_in_a_segment() {
    for item_size_max_bytes in [1024, MB, 2 * MB + 3, 5 * MB] {
        let mut s = Store::new(StoreConfig {
            item_size_max_bytes,
            ..config(8 * MB, WhenFull::Evict)
        });
        let key = [b'k'; KEY_LEN_MAX];
        let mut value_len = item_size_max_bytes;
        while !crate::limits::item_fits(key.len(), 1, value_len, item_size_max_bytes) {
            value_len -= 1;
        }
        let value = vec![b'v'; value_len];
        assert!(matches!(
            s.store(StoreMode::Set, &key, 1, 0, &value, 1),
            StoreOutcome::Stored(_)
        ));
        assert_eq!(s.get(&key, 1).unwrap().value.len(), value_len);
    }
}

/// A tiny xorshift PRNG, so randomized tests need no crate and replay from a seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn filling_far_past_the_limit_never_grows_the_arena() {
    let seed = 0x9e37_79b9_7f4a_7c15;
    let mut rng = XorShift(seed);
    let mut s = store(4 * MB);
    let arena_bytes = s.arena_bytes();
    assert_eq!(arena_bytes, 4 * MB);
    let value = vec![b'v'; 4000];
    let mut stored = 0u64;
    for i in 0..40_000u64 {
        let key = format!("key:{}", rng.below(1 << 40));
        let len = rng.below(4000) as usize;
        if let StoreOutcome::Stored(_) =
            set(&mut s, key.as_bytes(), &value[..len], (i / 1000) as u32 + 2)
        {
            stored += 1;
        }
        if i % 997 == 0 {
            let st = s.stats();
            assert_eq!(s.arena_bytes(), arena_bytes, "seed {seed:#x}");
            assert!(st.bytes <= arena_bytes as u64, "seed {seed:#x}");
            assert!(
                st.curr_items * item_bytes(1, 0) as u64 <= arena_bytes as u64,
                "seed {seed:#x}"
            );
        }
    }
    let st = s.stats();
    assert_eq!(stored, 40_000, "evicting, every store succeeds");
    assert_eq!(st.total_items, 40_000);
    assert!(st.evictions > 30_000, "{st:?}");
    assert_eq!(st.evictions, st.evicted_unfetched);
    // The arena stays mostly full of live items.
    assert!(st.bytes > arena_bytes as u64 / 2, "{st:?}");
}

#[test]
fn a_hot_set_read_between_writes_survives_a_cold_scan_of_four_times_the_memory() {
    let mut s = store(4 * MB);
    let hot_keys: Vec<String> = (0..2000).map(|i| format!("hot:{i}")).collect();
    let never_read: Vec<String> = (0..2000).map(|i| format!("unread:{i}")).collect();
    let value = [b'h'; 100];
    for (hot, unread) in hot_keys.iter().zip(&never_read) {
        set(&mut s, hot.as_bytes(), &value, 1);
        set(&mut s, unread.as_bytes(), &value, 1);
    }
    let cold_value = [b'c'; 200];
    let cold_writes = 16 * MB / item_bytes(10, 200);
    let (mut hits, mut reads) = (0, 0);
    for i in 0..cold_writes {
        set(&mut s, format!("cold:{i:06}").as_bytes(), &cold_value, 2);
        reads += 1;
        if s.get(hot_keys[i % hot_keys.len()].as_bytes(), 2).is_ok() {
            hits += 1;
        }
    }
    assert!(s.stats().evictions as usize > cold_writes / 2);
    assert_eq!(hits, reads, "a hot item was evicted");
    for hot in &hot_keys {
        assert!(s.get(hot.as_bytes(), 3).is_ok(), "{hot} was evicted");
    }
    // The same items, never read, were scanned out: second chance made the difference.
    assert!(never_read.iter().all(|k| s.get(k.as_bytes(), 3).is_err()));
}

#[test]
fn a_reclaim_makes_room_even_when_every_item_was_read() {
    let mut s = store(MB);
    let value = [b'v'; 1000];
    for i in 0..2000 {
        let key = format!("k{i}");
        set(&mut s, key.as_bytes(), &value, 1);
        s.get(key.as_bytes(), 1).unwrap();
    }
    let big = vec![b'b'; 900 * 1024];
    assert!(matches!(
        set(&mut s, b"big", &big, 1),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(s.get(b"big", 1).unwrap().value.len(), big.len());
}

/// Every note `take_evicted` hands over, with the count of dropped ones.
fn taken(s: &mut Store) -> (Vec<(Vec<u8>, Evicted)>, u64) {
    let mut notes = Vec::new();
    let dropped = s.take_evicted(|key, evicted| notes.push((key.to_vec(), evicted)));
    (notes, dropped)
}

#[test]
fn evictions_are_noted_only_while_asked_with_what_watch_evictions_reports() {
    let value = [b'v'; 1000];
    let mut s = store(MB);
    for i in 0..2000 {
        set(&mut s, format!("a{i}").as_bytes(), &value, 20);
    }
    let unnoted = s.stats().evictions;
    assert!(unnoted > 0 && !s.has_evicted(), "nobody asked");

    s.note_evictions(true);
    // `ttl` expires at 150; `read` is read once (and so kept one pass more).
    s.store(StoreMode::Set, b"ttl", 0, 150, &value, 50);
    set(&mut s, b"read", &value, 50);
    assert!(s.get(b"read", 52).is_ok());
    for i in 0..3000 {
        set(&mut s, format!("b{i}").as_bytes(), &value, 60);
    }
    let (notes, dropped) = taken(&mut s);
    assert_eq!(dropped, 0);
    assert_eq!(notes.len() as u64, s.stats().evictions - unnoted);
    assert!(!s.has_evicted(), "taken notes are forgotten");
    let note = |key: &[u8]| notes.iter().find(|(k, _)| k == key).map(|&(_, e)| e);
    let expect = |fetched, ttl_secs, idle_secs| Evicted {
        fetched,
        ttl_secs,
        idle_secs,
        value_len: 1000,
    };
    assert_eq!(note(b"a1999"), Some(expect(false, None, 40)));
    assert_eq!(note(b"ttl"), Some(expect(false, Some(90), 10)));
    assert_eq!(note(b"read"), Some(expect(true, None, 8)));

    s.note_evictions(false);
    for i in 0..2000 {
        set(&mut s, format!("c{i}").as_bytes(), &value, 70);
    }
    assert!(!s.has_evicted());
}

#[test]
fn evictions_past_the_notes_limit_are_counted_as_dropped() {
    let mut s = store(8 * MB);
    s.note_evictions(true);
    let stores = 300_000;
    for i in 0..stores {
        set(&mut s, format!("k{i}").as_bytes(), b"v", 1);
    }
    let evictions = s.stats().evictions;
    assert!(evictions > crate::limits::EVICTION_NOTES_MAX as u64);
    let (notes, dropped) = taken(&mut s);
    assert_eq!(notes.len(), crate::limits::EVICTION_NOTES_MAX);
    assert_eq!(notes.len() as u64 + dropped, evictions);
}

#[test]
fn overwrites_reuse_dead_space_without_evicting_items_never_read() {
    let mut s = store(4 * MB);
    let value = [b'v'; 500];
    // 1000 keys written once and never read, spread among 20 MiB of overwrites of
    // 100 other keys: every segment is mostly dead, so nothing need be evicted.
    for i in 0..40_000 {
        if i % 40 == 0 {
            set(&mut s, format!("stable{}", i / 40).as_bytes(), &value, 1);
        }
        set(&mut s, format!("churn{}", i % 100).as_bytes(), &value, 1);
    }
    let st = s.stats();
    assert_eq!((st.evictions, st.curr_items), (0, 1100), "{st:?}");
}

#[test]
fn expired_items_are_reclaimed_and_counted_when_their_segment_is() {
    let mut s = store(2 * MB);
    let value = [b'v'; 1000];
    for i in 0..1500 {
        s.store(StoreMode::Set, format!("e{i}").as_bytes(), 0, 5, &value, 1);
    }
    s.get(b"e0", 2).unwrap();
    for i in 0..3000 {
        set(&mut s, format!("n{i}").as_bytes(), &value, 10);
    }
    let st = s.stats();
    assert_eq!(st.reclaimed, 1500, "{st:?}");
    assert_eq!(st.expired_unfetched, 1499, "{st:?}");
    s.reset_stats();
    let after = s.stats();
    assert_eq!(
        (after.reclaimed, after.evictions, after.total_items),
        (0, 0, 0)
    );
    assert_eq!((after.curr_items, after.bytes), (st.curr_items, st.bytes));
}

#[test]
fn refusing_stores_answers_out_of_memory_instead_of_evicting() {
    let mut s = Store::new(config(2 * MB, WhenFull::Refuse));
    let value = [b'v'; 1000];
    let mut stored = Vec::new();
    for i in 0..5000 {
        let key = format!("k{i}");
        match set(&mut s, key.as_bytes(), &value, 1) {
            StoreOutcome::Stored(_) => stored.push(key),
            StoreOutcome::OutOfMemory => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        stored.len() > 1800 && stored.len() < 2100,
        "{}",
        stored.len()
    );
    assert_eq!(s.stats().evictions, 0);
    for key in &stored {
        assert!(s.get(key.as_bytes(), 1).is_ok(), "{key} was evicted");
    }
    assert_eq!(set(&mut s, b"more", &value, 1), StoreOutcome::OutOfMemory);
    // Deleting makes room again (a reclaim compacts the dead space away).
    for key in &stored[..100] {
        s.delete(key.as_bytes(), 1);
    }
    assert!(matches!(
        set(&mut s, b"more", &value, 1),
        StoreOutcome::Stored(_)
    ));
}

#[test]
fn refusing_stores_still_reuse_expired_space() {
    let mut s = Store::new(config(MB, WhenFull::Refuse));
    let value = [b'v'; 1000];
    let mut i = 0;
    while let StoreOutcome::Stored(_) =
        s.store(StoreMode::Set, format!("k{i}").as_bytes(), 0, 10, &value, 1)
    {
        i += 1;
    }
    assert_eq!(set(&mut s, b"later", &value, 9), StoreOutcome::OutOfMemory);
    assert!(matches!(
        set(&mut s, b"later", &value, 10),
        StoreOutcome::Stored(_)
    ));
    assert_eq!(s.stats().evictions, 0);
}

#[test]
fn lowering_the_memory_limit_evicts_down_to_it_and_raising_it_allocates() {
    let mut s = store(8 * MB);
    let value = [b'v'; 1000];
    for i in 0..8000 {
        set(&mut s, format!("k{i}").as_bytes(), &value, 1);
    }
    assert!(s.stats().bytes > 7 * MB as u64);
    s.set_memory_limit(2 * MB);
    for i in 0..100 {
        set(&mut s, format!("n{i}").as_bytes(), &value, 1);
    }
    assert!(s.stats().bytes <= 2 * MB as u64, "{:?}", s.stats());
    assert_eq!(s.stats().limit_maxbytes, 2 * MB as u64);
    assert_eq!(s.arena_bytes(), 8 * MB);
    s.set_memory_limit(12 * MB);
    assert_eq!(s.arena_bytes(), 12 * MB);
    for i in 0..11000 {
        set(&mut s, format!("m{i}").as_bytes(), &value, 1);
    }
    assert!(s.stats().bytes > 10 * MB as u64, "{:?}", s.stats());
}

#[test]
fn a_store_smaller_than_a_segment_still_works_in_one_segment() {
    let mut s = store(100 * 1024);
    assert_eq!(s.arena_bytes(), s.segment_bytes());
    for i in 0..5000 {
        set(&mut s, format!("k{i}").as_bytes(), &[b'v'; 900], 1);
        s.get(format!("k{}", i / 2).as_bytes(), 1).ok();
    }
    assert!(s.get(b"k4999", 1).is_ok());
}

/// What the reference model holds for a key.
#[derive(Clone, Debug)]
struct ModelItem {
    value: Vec<u8>,
    flags: u32,
    exptime: u32,
    cas: u64,
}

/// One run of random operations against the store and a `HashMap`, with so little
/// live data that nothing may be evicted. Panics with the seed on any difference.
fn run_model(seed: u64, ops: usize) {
    use std::collections::HashMap;
    let mut rng = XorShift(seed);
    let mut s = store(4 * MB);
    let mut model: HashMap<Vec<u8>, ModelItem> = HashMap::new();
    let mut now = 2u32;
    let mut last_cas = 0u64;
    let live = |m: &ModelItem, now: u32| m.exptime == 0 || m.exptime > now;
    for step in 0..ops {
        let ctx = format!("seed {seed:#x} step {step}");
        if rng.below(50) == 0 {
            now += 1;
        }
        if rng.below(3000) == 0 {
            s.flush(now, now);
            model.clear();
        }
        let key = format!("key{}", rng.below(64)).into_bytes();
        model.retain(|_, m| live(m, now));
        let current = model.get(&key).cloned();
        let value: Vec<u8> = match rng.below(4) {
            0 => format!("{}", rng.below(1000)).into_bytes(),
            1 => format!("{}", u64::MAX - rng.below(3)).into_bytes(),
            _ => (0..rng.below(200))
                .map(|_| b'a' + rng.below(26) as u8)
                .collect(),
        };
        let flags = rng.below(4) as u32;
        let exptime = if rng.below(4) == 0 {
            now + rng.below(4) as u32
        } else {
            0
        };
        match rng.below(12) {
            0..=2 => {
                let got = s
                    .get(&key, now)
                    .ok()
                    .map(|v| (v.value.to_vec(), v.flags, v.cas));
                let want = current.map(|m| (m.value, m.flags, m.cas));
                assert_eq!(got, want, "get: {ctx}");
            }
            3..=7 => {
                let mode = match rng.below(6) {
                    0 => StoreMode::Set,
                    1 => StoreMode::Add,
                    2 => StoreMode::Replace,
                    3 => StoreMode::Append,
                    4 => StoreMode::Prepend,
                    _ => StoreMode::Cas(match (&current, rng.below(2)) {
                        (Some(m), 0) => m.cas,
                        _ => last_cas + 1 + rng.below(2),
                    }),
                };
                let got = s.store(mode, &key, flags, exptime, &value, now);
                let want = match (mode, &current) {
                    (StoreMode::Add, Some(_)) => StoreOutcome::NotStored,
                    (StoreMode::Replace | StoreMode::Append | StoreMode::Prepend, None) => {
                        StoreOutcome::NotStored
                    }
                    (StoreMode::Cas(_), None) => StoreOutcome::NotFound,
                    (StoreMode::Cas(u), Some(m)) if m.cas != u => StoreOutcome::Exists,
                    _ => StoreOutcome::Stored(last_cas + 1),
                };
                assert_eq!(got, want, "{mode:?}: {ctx}");
                if let StoreOutcome::Stored(cas) = got {
                    last_cas = cas;
                    let item = match (mode, current) {
                        (StoreMode::Append, Some(m)) => ModelItem {
                            value: [m.value, value].concat(),
                            cas,
                            ..m
                        },
                        (StoreMode::Prepend, Some(m)) => ModelItem {
                            value: [value, m.value].concat(),
                            cas,
                            ..m
                        },
                        _ => ModelItem {
                            value,
                            flags,
                            exptime,
                            cas,
                        },
                    };
                    if item.value.len() > 1000 {
                        s.delete(&key, now);
                        model.remove(&key);
                    } else {
                        model.insert(key, item);
                    }
                }
            }
            8 => {
                let got = s.delete(&key, now);
                let want = match model.remove(&key) {
                    Some(_) => DeleteOutcome::Deleted,
                    None => DeleteOutcome::NotFound,
                };
                assert_eq!(got, want, "delete: {ctx}");
            }
            9 => {
                let got = s.touch(&key, exptime, now).ok().map(|v| v.value.to_vec());
                assert_eq!(got, current.map(|m| m.value), "touch: {ctx}");
                if let Some(m) = model.get_mut(&key) {
                    m.exptime = exptime;
                }
            }
            _ => {
                let op = if rng.below(2) == 0 {
                    ArithOp::Incr
                } else {
                    ArithOp::Decr
                };
                let delta = rng.below(2000);
                let got = s.arith(op, &key, delta, now);
                let want = match &current {
                    None => ArithOutcome::NotFound,
                    // The parse rules have their own table test against memcached.
                    Some(m) => match safe_strtoull(&m.value) {
                        None => ArithOutcome::NonNumeric,
                        Some(n) => ArithOutcome::Value(match op {
                            ArithOp::Incr => n.wrapping_add(delta),
                            ArithOp::Decr => n.saturating_sub(delta),
                        }),
                    },
                };
                assert_eq!(got, want, "{op:?}: {ctx}");
                if let (ArithOutcome::Value(n), Some(m)) = (got, model.get_mut(&key)) {
                    last_cas += 1;
                    let digits = n.to_string().into_bytes();
                    m.value = if digits.len() <= m.value.len() {
                        let mut padded = digits;
                        padded.resize(m.value.len(), b' ');
                        padded
                    } else {
                        digits
                    };
                    m.cas = last_cas;
                }
            }
        }
        let st = s.stats();
        assert_eq!(st.evictions, 0, "{ctx}");
        assert!(st.curr_items >= model.len() as u64, "{ctx}");
    }
    // Every key the model holds, and no other, is in the store.
    for i in 0..64 {
        let key = format!("key{i}").into_bytes();
        let want = model
            .get(&key)
            .filter(|m| live(m, now))
            .map(|m| m.value.clone());
        assert_eq!(value_of(&mut s, &key, now), want, "final: seed {seed:#x}");
    }
}

#[test]
fn random_operations_match_a_hashmap_model_when_nothing_is_evicted() {
    for seed in 1..=8u64 {
        run_model(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 20_000);
    }
}

#[test]
fn under_eviction_a_hit_is_always_the_last_value_stored() {
    let seed = 0x2545_f491_4f6c_dd1d;
    let mut rng = XorShift(seed);
    let mut s = store(2 * MB);
    let mut version = vec![0u64; 5000];
    for step in 0..100_000 {
        let k = rng.below(version.len() as u64) as usize;
        let key = format!("k{k}");
        if rng.below(3) == 0 {
            let got = s.get(key.as_bytes(), 1).ok().map(|v| v.value.to_vec());
            if let Some(got) = got {
                let want = format!("{key}:{}", version[k]);
                assert_eq!(
                    &got[..want.len()],
                    want.as_bytes(),
                    "seed {seed:#x} step {step}"
                );
            }
        } else {
            version[k] += 1;
            let mut value = format!("{key}:{}", version[k]).into_bytes();
            value.resize(value.len() + rng.below(900) as usize, b'.');
            assert!(matches!(
                set(&mut s, key.as_bytes(), &value, 1),
                StoreOutcome::Stored(_)
            ));
        }
    }
    assert!(s.stats().evictions > 0);
}

#[test]
fn small_items_fit_one_and_a_half_times_as_many_as_in_memcached() {
    // memcached 1.6.18 puts a 10-byte key with a 32-byte value in a 120-byte chunk.
    let memcached_chunk_bytes = 120;
    let mut s = store(32 * MB);
    let value = [b'v'; 32];
    for i in 0..1_000_000u32 {
        set(&mut s, format!("{i:010}").as_bytes(), &value, 1);
    }
    let held = s.stats().curr_items as usize;
    assert!(s.stats().evictions > 0);
    assert!(held * 2 >= 3 * (32 * MB / memcached_chunk_bytes), "{held}");
}

#[test]
fn visiting_every_segment_meets_each_live_item_once() {
    let mut s = store(4 * MB);
    for i in 0..3000 {
        set(&mut s, format!("k{i}").as_bytes(), &[b'v'; 700], 10);
    }
    for i in 0..3000 {
        if i % 3 == 0 {
            s.delete(format!("k{i}").as_bytes(), 10);
        }
    }
    s.store(StoreMode::Set, b"short", 0, 12, b"x", 10);
    let mut seen = std::collections::HashSet::new();
    for segment in 0..s.segment_count() {
        s.visit_segment(segment, 20, |item| {
            assert!(seen.insert(item.key.to_vec()), "met twice");
        });
    }
    let live: std::collections::HashSet<Vec<u8>> = (0..3000)
        .map(|i| format!("k{i}").into_bytes())
        .filter(|k| s.peek(k, 20).is_ok())
        .collect();
    assert_eq!(seen, live, "expired, deleted and evicted items are not met");
    assert!(live.len() > 1000);
}

#[test]
fn observed_cas_uniques_are_exceeded() {
    let mut s = Store::new(StoreConfig {
        cas_suffix: 3,
        cas_suffix_bits: 4,
        ..config(4 * MB, WhenFull::Evict)
    });
    s.observe_cas((1000 << 4) | 9);
    let StoreOutcome::Stored(cas) = set(&mut s, b"k", b"v", 10) else {
        panic!("not stored");
    };
    assert_eq!(cas, (1001 << 4) | 3);
}

#[test]
fn the_oldest_access_is_that_of_the_least_recently_read_item_next_to_go() {
    let mut s = store(4 * MB);
    assert_eq!(s.oldest_access(5), None);
    set(&mut s, b"a", b"1", 10);
    set(&mut s, b"b", b"2", 20);
    assert_eq!(s.oldest_access(30), Some(10));
    // Reading `a` makes `b` the least recently accessed.
    value_of(&mut s, b"a", 25);
    assert_eq!(s.oldest_access(30), Some(20));
    s.delete(b"a", 30);
    s.delete(b"b", 30);
    assert_eq!(s.oldest_access(30), None);
}

#[test]
fn an_eviction_records_how_long_the_item_had_gone_unread_and_its_expiry() {
    let mut s = store(2 * MB);
    let value = vec![b'v'; 100_000];
    for i in 0..20 {
        let key = format!("old{i}");
        s.store(StoreMode::Set, key.as_bytes(), 0, 3600, &value, 10);
    }
    let mut i = 0;
    while s.stats().evictions == 0 {
        assert!(i < 100, "nothing evicted");
        set(&mut s, format!("new{i}").as_bytes(), &value, 50);
        i += 1;
    }
    let st = s.stats();
    assert_eq!(
        st.evicted_nonzero, st.evictions,
        "every evicted item expires"
    );
    assert_eq!((st.evicted_at, st.evicted_time_secs), (50, 40));
}

#[test]
fn cluster_cas_uniques_keep_up_with_the_clock() {
    // Two stores, one of which handed out many uniques: a write on the quiet
    // one a moment later still gets the larger unique.
    let cluster = |suffix| StoreConfig {
        cas_suffix: suffix,
        cas_suffix_bits: 16,
        clock_cas: true,
        ..config(4 * MB, WhenFull::Evict)
    };
    let (mut busy, mut quiet) = (Store::new(cluster(1)), Store::new(cluster(2)));
    let mut last = 0;
    for i in 0..1000u32 {
        let StoreOutcome::Stored(cas) = set(&mut busy, &i.to_le_bytes(), b"v", 1) else {
            panic!()
        };
        assert!(cas > last, "uniques grow");
        last = cas;
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let StoreOutcome::Stored(later) = set(&mut quiet, b"k", b"v", 1) else {
        panic!()
    };
    assert!(later > last, "{later} after {last}");
    assert_eq!(later & 0xffff, 2, "the suffix stays");
    assert!(super::clock_cas_floor(16) > 0, "the floor still fits");
}
