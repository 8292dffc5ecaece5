//! The byte layout of one item inside the arena (pure).
//!
//! An item is a 30-byte header, the key, then the value (no `\r\n`), rounded up
//! to [`ITEM_ALIGN_BYTES`] so that item addresses can count 8-byte units.
//!
//! ```text
//! offset  size  field
//!      0     8  cas        CAS unique
//!      8     4  exptime    relative expiry (0: never)
//!     12     4  atime      relative time of the last update or access
//!     16     4  flags      client flags
//!     20     4  value_len  bytes of value
//!     24     4  next       next item in the same index bucket (NIL: end)
//!     28     1  key_len
//!     29     1  bits       LINKED | ACCESSED | FETCHED | STALE | TOKEN_SENT | KEY_BINARY
//!     30     k  key
//!   30+k     v  value
//! ```
//!
//! Fields are little-endian and read through byte slices, so the arena needs no
//! alignment beyond the 8-byte rounding that keeps addresses short.

/// Bytes of header before the key.
pub const HEADER_BYTES: usize = 30;

/// Items start on multiples of this many bytes.
pub const ITEM_ALIGN_BYTES: usize = 8;

/// The item is in the index (a dead item keeps its bytes until its segment is reclaimed).
pub const BIT_LINKED: u8 = 1;
/// Read or touched since its segment was last reclaimed: earns a second chance.
pub const BIT_ACCESSED: u8 = 2;
/// Read at least once since it was stored (memcached's `ITEM_FETCHED`).
pub const BIT_FETCHED: u8 = 4;
/// Invalidated by `md ... I` (memcached's `ITEM_STALE`): readers are told `X`.
pub const BIT_STALE: u8 = 8;
/// A reader has been handed the recache token `W` (memcached's `ITEM_TOKEN_SENT`).
pub const BIT_TOKEN_SENT: u8 = 16;
/// The key was sent in base64 (`b`): meta replies show it so (`ITEM_KEY_BINARY`).
pub const BIT_KEY_BINARY: u8 = 32;

const CAS: usize = 0;
const EXPTIME: usize = 8;
const ATIME: usize = 12;
const FLAGS: usize = 16;
const VALUE_LEN: usize = 20;
const NEXT: usize = 24;
const KEY_LEN: usize = 28;
const BITS: usize = 29;

/// Bytes an item with this key and value takes in the arena.
pub fn item_bytes(key_len: usize, value_len: usize) -> usize {
    (HEADER_BYTES + key_len + value_len).next_multiple_of(ITEM_ALIGN_BYTES)
}

/// The header fields, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub cas: u64,
    pub exptime: u32,
    pub atime: u32,
    pub flags: u32,
    pub value_len: u32,
    pub next: u32,
    pub key_len: u8,
    pub bits: u8,
}

impl Header {
    pub fn read(item: &[u8]) -> Header {
        Header {
            cas: u64::from_le_bytes(item[CAS..CAS + 8].try_into().unwrap()),
            exptime: read_u32(item, EXPTIME),
            atime: read_u32(item, ATIME),
            flags: read_u32(item, FLAGS),
            value_len: read_u32(item, VALUE_LEN),
            next: read_u32(item, NEXT),
            key_len: item[KEY_LEN],
            bits: item[BITS],
        }
    }

    pub fn write(&self, item: &mut [u8]) {
        item[CAS..CAS + 8].copy_from_slice(&self.cas.to_le_bytes());
        write_u32(item, EXPTIME, self.exptime);
        write_u32(item, ATIME, self.atime);
        write_u32(item, FLAGS, self.flags);
        write_u32(item, VALUE_LEN, self.value_len);
        write_u32(item, NEXT, self.next);
        item[KEY_LEN] = self.key_len;
        item[BITS] = self.bits;
    }

    /// Bytes the whole item takes in the arena.
    pub fn item_bytes(&self) -> usize {
        item_bytes(self.key_len as usize, self.value_len as usize)
    }
}

fn read_u32(item: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(item[at..at + 4].try_into().unwrap())
}

fn write_u32(item: &mut [u8], at: usize, v: u32) {
    item[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn next(item: &[u8]) -> u32 {
    read_u32(item, NEXT)
}

pub fn set_next(item: &mut [u8], next: u32) {
    write_u32(item, NEXT, next);
}

pub fn bits(item: &[u8]) -> u8 {
    item[BITS]
}

pub fn set_bits(item: &mut [u8], bits: u8) {
    item[BITS] = bits;
}

pub fn set_cas(item: &mut [u8], cas: u64) {
    item[CAS..CAS + 8].copy_from_slice(&cas.to_le_bytes());
}

pub fn set_exptime(item: &mut [u8], exptime: u32) {
    write_u32(item, EXPTIME, exptime);
}

pub fn set_atime(item: &mut [u8], atime: u32) {
    write_u32(item, ATIME, atime);
}

pub fn key(item: &[u8]) -> &[u8] {
    &item[HEADER_BYTES..HEADER_BYTES + item[KEY_LEN] as usize]
}

pub fn value(item: &[u8]) -> &[u8] {
    let start = HEADER_BYTES + item[KEY_LEN] as usize;
    &item[start..start + read_u32(item, VALUE_LEN) as usize]
}

pub fn value_mut(item: &mut [u8]) -> &mut [u8] {
    let start = HEADER_BYTES + item[KEY_LEN] as usize;
    let len = read_u32(item, VALUE_LEN) as usize;
    &mut item[start..start + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_thirty_bytes_and_a_small_item_takes_seventy_two() {
        assert_eq!(HEADER_BYTES, 8 + 4 + 4 + 4 + 4 + 4 + 1 + 1);
        // 10-byte key and 32-byte value: memcached puts this in its 120-byte class.
        assert_eq!(item_bytes(10, 32), 72);
        assert_eq!(item_bytes(1, 0), 32);
    }

    #[test]
    fn a_header_reads_back_as_written() {
        let mut buf = [0u8; 64];
        let h = Header {
            cas: 0x0102_0304_0506_0708,
            exptime: 9,
            atime: 10,
            flags: 0xdead_beef,
            value_len: 3,
            next: 77,
            key_len: 2,
            bits: BIT_LINKED | BIT_FETCHED,
        };
        h.write(&mut buf);
        buf[30..32].copy_from_slice(b"ab");
        buf[32..35].copy_from_slice(b"xyz");
        assert_eq!(Header::read(&buf), h);
        assert_eq!(key(&buf), b"ab");
        assert_eq!(value(&buf), b"xyz");
        assert_eq!(next(&buf), 77);
    }
}
