//! Bytes to requests and replies to bytes (pure: no I/O, no clock).
//!
//! Parsers measure, callers advance: `parse(buf)` returns a request that borrows
//! from `buf` and how many bytes it used; `Incomplete` consumes nothing.

pub mod ascii_auth;
pub mod binary;
pub mod carried;
pub mod meta;
pub mod sasl;
pub mod text;
mod tokens;

pub use text::{parse, ParseError, Request};

/// What the parser needs to know of the server's settings.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// `-I`: the largest item memcached would accept, counted as [`crate::limits::item_fits`] counts.
    pub item_size_max_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            item_size_max_bytes: crate::limits::ITEM_SIZE_MAX_DEFAULT_BYTES,
        }
    }
}
