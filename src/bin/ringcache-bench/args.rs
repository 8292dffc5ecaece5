//! The command line and the [`Plan`] checked from it (pure, but for reading
//! `--tls-ca` when TLS is asked for).

use crate::keys::Zipf;
use crate::wire::{ketama_ring, owned_key_ids, route_table};
use crate::{
    CONNECTIONS_MAX, KETAMA_KEY_SPACE_MAX, PIPELINE_MAX, PREFILL_PIPELINE, VALUE_BYTES_MAX,
};
use clap::{Parser, ValueEnum};
use std::sync::Arc;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ringcache-bench",
    about = "Load generator for memcached-protocol servers (memtier_benchmark-like)"
)]
pub(crate) struct Args {
    /// Servers, host:port, comma separated; connection i goes to server i mod n.
    /// See --ketama for routing each request to its key's owner instead.
    #[arg(
        short = 's',
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:11211"
    )]
    pub(crate) servers: Vec<String>,
    /// Worker threads.
    #[arg(short = 't', long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Connections per thread.
    #[arg(short = 'c', long, default_value_t = 50)]
    pub(crate) clients: usize,
    /// Requests each connection keeps in flight (with --ketama: in all, over
    /// the connection's sockets).
    #[arg(long, default_value_t = 1)]
    pub(crate) pipeline: usize,
    /// set:get ratio, such as 1:10.
    #[arg(long, default_value = "1:10")]
    pub(crate) ratio: String,
    /// Number of distinct keys (ids 0 .. key-space).
    #[arg(long, default_value_t = 100_000)]
    pub(crate) key_space: u64,
    /// How keys are drawn.
    #[arg(long, value_enum, default_value_t = KeyPattern::Uniform)]
    pub(crate) key_pattern: KeyPattern,
    /// Zipf exponent for --key-pattern zipf (0 < theta < 1).
    #[arg(long, default_value_t = 0.99)]
    pub(crate) zipf_theta: f64,
    /// Text before the key id.
    #[arg(long, default_value = "key:")]
    pub(crate) key_prefix: String,
    /// Zero-pad the key id to this many digits (0: no padding).
    #[arg(long, default_value_t = 0)]
    pub(crate) key_digits: usize,
    /// Value size in bytes: N, or MIN-MAX for sizes drawn uniformly.
    #[arg(short = 'd', long, default_value = "32")]
    pub(crate) data_size: String,
    /// Expiry time sent with sets (seconds, 0: never).
    #[arg(long, default_value_t = 0)]
    pub(crate) expiry: u32,
    /// Measured run time in seconds (ignored with --requests).
    #[arg(long, default_value_t = 5.0)]
    pub(crate) test_time: f64,
    /// Measured requests in all, instead of a run time.
    #[arg(short = 'n', long)]
    pub(crate) requests: Option<u64>,
    /// Seconds of load before measuring starts (with --test-time).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) warmup: f64,
    /// Wire protocol.
    #[arg(short = 'P', long, value_enum, default_value_t = Protocol::Text)]
    pub(crate) protocol: Protocol,
    /// Set every key once (sequentially, pipelined) before the run.
    #[arg(long)]
    pub(crate) prefill: bool,
    /// Every request is a get; a miss is followed by a set of that key.
    #[arg(long)]
    pub(crate) cache_aside: bool,
    /// Speak TLS to the servers, trusting the CA certificates in this PEM file
    /// (for `ringcache -Z` and `memcached -Z`). The handshake happens before the
    /// run; not with --fill-until-evictions.
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
    /// Only keys that this endpoint owns on the ketama ring of --ring (host:port),
    /// e.g. to load one shard with keys it owns, or with keys another shard owns.
    #[arg(long, value_name = "HOST:PORT", requires = "ring")]
    pub(crate) owned_by: Option<String>,
    /// The ketama ring's endpoints for --owned-by, comma separated (a node's
    /// --shard-ports endpoints).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub(crate) ring: Vec<String>,
    /// Route by key, as a ketama client does: each connection (of --clients) is
    /// one socket per endpoint listed, and each request goes to the endpoint that
    /// owns its key on the ketama ring of these endpoints (160 points each, as
    /// ringcache builds its ring: give the shard endpoints of a cluster's up and
    /// down nodes, not joining ones, to send every key to its primary with no
    /// hop; or a node's --shard-ports endpoints). --pipeline stays
    /// per connection: that many requests in flight over its sockets together,
    /// so the load offered is the same as without --ketama. Replaces --servers;
    /// --key-space at most 2^26 (every key is hashed once before the run).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOST:PORT,...",
        conflicts_with_all = ["servers", "fill_until_evictions"]
    )]
    pub(crate) ketama: Vec<String>,
    /// Set sequential keys until the server reports an eviction; report items held.
    #[arg(long)]
    pub(crate) fill_until_evictions: bool,
    /// Server process ids whose CPU time (/proc/PID/stat) to report per request.
    #[arg(long, value_delimiter = ',')]
    pub(crate) server_pid: Vec<i32>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// No progress line.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Seed for key and size choices.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KeyPattern {
    Uniform,
    Sequential,
    Zipf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    Text,
    Meta,
    Binary,
}

/// Everything a worker needs, checked once.
pub(crate) struct Plan {
    /// --servers, or with --ketama its endpoints (each connection opens them all).
    pub(crate) servers: Vec<String>,
    pub(crate) threads: usize,
    pub(crate) clients: usize,
    pub(crate) pipeline: usize,
    /// The deepest window any phase uses (buffers are sized for it).
    pub(crate) window_max: usize,
    pub(crate) sets_per_cycle: u32,
    pub(crate) gets_per_cycle: u32,
    pub(crate) key_space: u64,
    pub(crate) key_pattern: KeyPattern,
    pub(crate) zipf: Option<Zipf>,
    pub(crate) key_prefix: Vec<u8>,
    pub(crate) key_digits: usize,
    /// With --owned-by: the ids of the keys used, in order; key n is `key_ids[n]`.
    pub(crate) key_ids: Option<Vec<u64>>,
    /// With --ketama: key n goes to `servers[route[n]]`, its owner on the ring.
    pub(crate) route: Option<Vec<u16>>,
    pub(crate) value_min: usize,
    pub(crate) value_max: usize,
    pub(crate) expiry: u32,
    pub(crate) requests: Option<u64>,
    pub(crate) protocol: Protocol,
    pub(crate) prefill: bool,
    pub(crate) cache_aside: bool,
    pub(crate) seed: u64,
    /// `--tls-ca`: every connection speaks TLS, trusting these CAs.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

/// A TLS client configuration that trusts the PEM certificates in `ca_file`.
pub(crate) fn tls_client_config(
    ca_file: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {}: {e}", ca_file.display()))?;
    }
    // The same provider the server uses (see src/runtime/tls.rs).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--tls-ca: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Plan {
    pub(crate) fn connections(&self) -> usize {
        self.threads * self.clients
    }

    /// Sockets per connection: one, or with --ketama one per endpoint.
    pub(crate) fn links_per_conn(&self) -> usize {
        if self.route.is_some() {
            self.servers.len()
        } else {
            1
        }
    }
}

pub(crate) fn parse_ratio(text: &str) -> Result<(u32, u32), String> {
    let (s, g) = text
        .split_once(':')
        .ok_or_else(|| format!("--ratio {text:?}: expected SETS:GETS, such as 1:10"))?;
    let s: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("--ratio {text:?}: bad set count"))?;
    let g: u32 = g
        .trim()
        .parse()
        .map_err(|_| format!("--ratio {text:?}: bad get count"))?;
    if s + g == 0 {
        return Err(format!(
            "--ratio {text:?}: at least one of the two must be non-zero"
        ));
    }
    Ok((s, g))
}

pub(crate) fn parse_data_size(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--data-size {text:?}: expected N or MIN-MAX bytes");
    let (min, max) = match text.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let n = text.trim().parse().map_err(|_| bad())?;
            (n, n)
        }
    };
    if min > max || max > VALUE_BYTES_MAX {
        return Err(format!(
            "--data-size {text:?}: need MIN <= MAX <= {VALUE_BYTES_MAX}"
        ));
    }
    Ok((min, max))
}

impl Plan {
    pub(crate) fn from_args(args: &Args) -> Result<Plan, String> {
        if args.servers.is_empty() {
            return Err("--servers: at least one host:port".into());
        }
        if args.threads == 0 || args.clients == 0 || args.connections_total() > CONNECTIONS_MAX {
            return Err(format!(
                "--threads x --clients must be 1 to {CONNECTIONS_MAX}"
            ));
        }
        if !args.ketama.is_empty() {
            if args.connections_total().saturating_mul(args.ketama.len()) > CONNECTIONS_MAX {
                return Err(format!(
                    "--threads x --clients x --ketama endpoints must be at most {CONNECTIONS_MAX}"
                ));
            }
            if args.key_space > KETAMA_KEY_SPACE_MAX {
                return Err(format!(
                    "--key-space {}: at most {KETAMA_KEY_SPACE_MAX} with --ketama",
                    args.key_space
                ));
            }
        }
        if args.pipeline == 0 || args.pipeline > PIPELINE_MAX {
            return Err(format!("--pipeline must be 1 to {PIPELINE_MAX}"));
        }
        if args.key_space == 0 {
            return Err("--key-space must be at least 1".into());
        }
        let (sets_per_cycle, gets_per_cycle) = parse_ratio(&args.ratio)?;
        let (value_min, value_max) = parse_data_size(&args.data_size)?;
        let zipf = match args.key_pattern {
            KeyPattern::Zipf => Some(Zipf::new(args.key_space, args.zipf_theta)?),
            _ => None,
        };
        if args.requests.is_none() && (args.test_time.is_nan() || args.test_time <= 0.0) {
            return Err("--test-time must be positive (or give --requests)".into());
        }
        if args.requests.is_some() && args.warmup > 0.0 {
            return Err("--warmup goes with --test-time, not --requests".into());
        }
        let key_ids = match &args.owned_by {
            None => None,
            Some(endpoint) => {
                if args.fill_until_evictions {
                    return Err("--owned-by does not go with --fill-until-evictions".into());
                }
                Some(owned_key_ids(args, endpoint)?)
            }
        };
        let ring = if args.ketama.is_empty() {
            None
        } else {
            Some(ketama_ring(&args.ketama)?)
        };
        let mut plan = Plan {
            servers: if ring.is_some() {
                args.ketama.clone()
            } else {
                args.servers.clone()
            },
            threads: args.threads,
            clients: args.clients,
            pipeline: args.pipeline,
            window_max: if args.prefill {
                args.pipeline.max(PREFILL_PIPELINE)
            } else {
                args.pipeline
            },
            sets_per_cycle,
            gets_per_cycle,
            key_space: args.key_space,
            key_pattern: args.key_pattern,
            zipf,
            key_prefix: args.key_prefix.as_bytes().to_vec(),
            key_digits: args.key_digits,
            key_ids,
            route: None,
            value_min,
            value_max,
            expiry: args.expiry,
            requests: args.requests,
            protocol: args.protocol,
            prefill: args.prefill,
            cache_aside: args.cache_aside,
            seed: args.seed,
            tls: args.tls_ca.as_deref().map(tls_client_config).transpose()?,
        };
        if let Some(ring) = ring {
            plan.route = Some(route_table(&plan, &ring));
        }
        Ok(plan)
    }
}

impl Args {
    pub(crate) fn connections_total(&self) -> usize {
        self.threads.saturating_mul(self.clients)
    }
}
