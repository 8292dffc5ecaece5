//! Placement: the consistent-hash ring, the cluster configuration and who owns
//! a key (pure).

pub mod config;
pub mod ring;
