//! Placement: the consistent-hash ring and who owns a key (pure).

pub mod ring;
