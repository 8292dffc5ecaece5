//! Placement: the consistent-hash ring, the cluster configuration, who owns a
//! key, how the configuration is shown to clients, and what nodes say to each
//! other on the data path (pure).

pub mod config;
pub mod encode;
pub mod placement;
pub mod ring;
pub mod wire;
