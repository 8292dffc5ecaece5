//! Placement: the consistent-hash ring, the cluster configuration, who owns a
//! key, and how the configuration is shown to clients (pure).

pub mod config;
pub mod encode;
pub mod placement;
pub mod ring;
