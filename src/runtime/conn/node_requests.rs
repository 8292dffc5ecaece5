//! Requests that concern every shard of the node, or every node: `stats`,
//! `flush_all`, `cache_memlimit`, `shutdown`, `lru_crawler`, `version` and the
//! like, and what a node outside any cluster says of itself.
//!
//! Does I/O: asks every other shard (and for `flush_all`, every other node)
//! and waits for their answers.

use crate::cli::{FlushCommand, ShutdownCommand};
use crate::cluster::config::{ClusterConfig, Endpoint};
use crate::cluster::ring::Owner;
use crate::cluster::wire::PeerMode;
use crate::engine::{self, reply, NodeView, Settings, Step};
use crate::protocol::text::{LruCrawler, Request, ShutdownMode};
use crate::runtime::cluster::{self, ConnMode};
use crate::runtime::conns;
use crate::runtime::ctx::ShardCtx;
use crate::runtime::messages::{Answer, Ask};
use crate::runtime::state::{self, with_state};
use crate::stats::{Latency, ShardStats};
use crate::storage::ttl::Clock;
use crate::storage::StoreStats;
use std::time::Instant;

/// Requests that concern every shard of the node.
pub(super) async fn node_request(
    ctx: &ShardCtx,
    req: &Request<'_>,
    clock: &Clock,
    out: &mut Vec<u8>,
    mode: ConnMode,
) -> Step {
    let node = &ctx.node;
    match *req {
        Request::Quit => return Step::Close,
        Request::Version => engine::write_version(out),
        Request::Verbosity { reply, .. } | Request::SlabsAutomove { reply } => {
            engine::write_reply(reply, reply::OK, out)
        }
        Request::FlushAll { reply, .. } if node.config.flush == FlushCommand::Refused => {
            with_state(|s| s.stats.cmd_flush += 1);
            engine::write_reply(reply, reply::FLUSH_NOT_ALLOWED, out);
        }
        Request::FlushAll { delay_secs, reply } => {
            if mode == ConnMode::Client {
                flush_other_nodes(ctx, delay_secs).await;
            }
            ctx.ask_all(|| Ask::Flush { delay_secs }).await;
            with_state(|s| {
                engine::flush(s, delay_secs, clock);
                s.stats.cmd_flush += 1;
            });
            engine::write_reply(reply, reply::OK, out);
        }
        Request::CacheMemlimit { megabytes, reply } => {
            let bytes = (megabytes as usize).saturating_mul(1024 * 1024) / node.shards;
            ctx.ask_all(|| Ask::MemoryLimit { bytes }).await;
            with_state(|s| s.store.set_memory_limit(bytes));
            engine::write_reply(reply, reply::OK, out);
        }
        Request::Shutdown { mode } => return shutdown(ctx, mode, out),
        Request::LruCrawler(LruCrawler::Crawl) => out.extend_from_slice(reply::OK),
        Request::LruCrawler(LruCrawler::BadClass) => {
            out.extend_from_slice(b"BADCLASS invalid class id\r\n")
        }
        Request::LruCrawler(LruCrawler::Metadump { every_item }) => {
            if every_item {
                out.extend_from_slice(&state::metadump(&ctx.node).await);
                for answer in ctx.ask_all(|| Ask::Metadump).await {
                    if let Answer::Metadump(lines) = answer {
                        out.extend_from_slice(&lines);
                    }
                }
            }
            out.extend_from_slice(reply::END);
        }
        Request::Stats { group } => stats(ctx, group, clock, out).await,
        _ => unreachable!("not a node request: {req:?}"),
    }
    Step::Continue
}

/// `shutdown [graceful]`, when `-A` allows it.
fn shutdown(ctx: &ShardCtx, mode: ShutdownMode, out: &mut Vec<u8>) -> Step {
    if ctx.node.config.shutdown == ShutdownCommand::Refused {
        out.extend_from_slice(reply::SHUTDOWN_NOT_ENABLED);
    } else if mode == ShutdownMode::Invalid {
        out.extend_from_slice(reply::SHUTDOWN_INVALID_MODE);
    } else {
        // The main thread waits for SIGINT and stops every shard, letting
        // connections finish what they have read (graceful either way).
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGINT);
        return Step::Close;
    }
    Step::Continue
}

/// `stats [group]`, over every shard of the node.
async fn stats(ctx: &ShardCtx, group: &[u8], clock: &Clock, out: &mut Vec<u8>) {
    match group {
        b"reset" => {
            ctx.ask_all(|| Ask::ResetStats).await;
            state::reset_stats();
            out.extend_from_slice(reply::RESET);
        }
        b"conns" => {
            let now = Instant::now();
            let mut view = NodeView {
                conns: conns::views(now),
                ..NodeView::default()
            };
            for answer in ctx.ask_all(|| Ask::Conns).await {
                if let Answer::Conns(other) = answer {
                    view.conns.extend(other);
                }
            }
            view.conns.sort_by_key(|c| c.id);
            engine::write_stats(group, &view, out);
        }
        b"hotkeys" => {
            let mut view = NodeView::default();
            let own = state::hot_keys();
            view.hot_keys.extend(own.into_iter().map(|k| (ctx.id, k)));
            let others = (0..ctx.node.shards as u32).filter(|&j| j != ctx.id);
            for (j, answer) in others.zip(ctx.ask_all(|| Ask::HotKeys).await) {
                if let Answer::HotKeys(keys) = answer {
                    view.hot_keys.extend(keys.into_iter().map(|k| (j, k)));
                }
            }
            engine::write_stats(group, &view, out);
        }
        b"cluster" if ctx.cluster.is_some() => {
            let view = node_view(ctx, clock, b"").await;
            let cluster = ctx.cluster.as_ref().expect("a cluster node");
            cluster::write_stats_cluster(cluster, view.store.curr_items, out).await;
        }
        b"peers" if ctx.cluster.is_some() => {
            let view = node_view(ctx, clock, b"").await;
            let cluster = ctx.cluster.as_ref().expect("a cluster node");
            cluster::write_stats_peers(cluster, &view.forwarded_to, out);
        }
        _ => {
            let view = node_view(ctx, clock, group).await;
            engine::write_stats(group, &view, out);
        }
    }
}

/// What a node outside any cluster says of itself to `stats cluster` and
/// `config get cluster`: itself as the one node (see
/// `ClusterConfig::single_node`), named by the address `local` the client
/// reached (`-l`'s first address when unknown), with its shards' own ports
/// (`--shard-ports`), which ketama clients can then reach directly.
pub(super) fn single_node_config(
    ctx: &ShardCtx,
    local: Option<std::net::SocketAddr>,
) -> ClusterConfig {
    let config = &ctx.node.config;
    let host = match local {
        Some(addr) => addr.ip().to_string(),
        None => config.listen.split(',').next().unwrap_or("").to_string(),
    };
    let endpoint = |port| Endpoint {
        host: host.clone(),
        port,
    };
    let client = endpoint(config.port);
    let shards = match config.shard_port_base {
        Some(base) => (0..ctx.node.shards as u16)
            .map(|shard| endpoint(base + shard))
            .collect(),
        None => vec![client.clone()],
    };
    ClusterConfig::single_node(client, shards)
}

/// `stats cluster` of a node outside any cluster: the one-node configuration,
/// then the figures a cluster node adds that have a meaning here.
pub(super) fn write_single_node_stats(config: &ClusterConfig, out: &mut Vec<u8>) {
    crate::cluster::discovery::encode_stats_cluster(config, out);
    out.truncate(out.len() - reply::END.len());
    out.extend_from_slice(b"STAT node_id 1\r\nSTAT node_state serving\r\n");
    out.extend_from_slice(reply::END);
}

/// `flush_all` on a client's connection flushes every node: each other node
/// flushes itself alone (its `rep` connection does not pass it on).
async fn flush_other_nodes(ctx: &ShardCtx, delay_secs: i64) {
    let Some(cluster) = &ctx.cluster else {
        return;
    };
    let node = &cluster.node;
    let request = format!("flush_all {delay_secs}\r\nmn\r\n").into_bytes();
    let mut waits = Vec::new();
    let view = cluster.view();
    for peer in view.config().nodes().iter().filter(|n| n.id != node.me) {
        let link = cluster.link(Owner {
            node: peer.id,
            shard: 0,
        });
        let reply = link.send(PeerMode::Replica, request.clone());
        waits.push((peer.id, link, reply));
    }
    for (id, link, reply) in waits {
        if link.wait(reply).await.as_deref() != Ok(reply::OK) {
            log::warn!("node {id} did not confirm flush_all");
        }
    }
}

/// Every shard's counters, gathered by `node_view`.
struct Gathered {
    per_shard: Vec<(ShardStats, StoreStats)>,
    shard: ShardStats,
    store: StoreStats,
    latency: Latency,
    forwarded_to: Vec<(u32, u64)>,
    /// When the least recently accessed item was last accessed.
    oldest_access: Option<u32>,
}

/// Sums every shard's counters and adds the process's own figures.
///
/// For `stats items` (`group`), also how long ago the oldest item was accessed,
/// which walks a segment of each store; other groups do not pay for it.
pub(in crate::runtime) async fn node_view(ctx: &ShardCtx, clock: &Clock, group: &[u8]) -> NodeView {
    let node = &ctx.node;
    let gathered = gather(ctx, clock, group == b"items").await;
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok();
    let micros = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
    let config = &node.config;
    NodeView {
        pid: std::process::id(),
        uptime_secs: node.started.elapsed().as_secs(),
        unix_time_secs: clock.unix_secs(),
        version: engine::VERSION,
        rusage_user_micros: usage.map(|u| micros(u.user_time())).unwrap_or(0),
        rusage_system_micros: usage.map(|u| micros(u.system_time())).unwrap_or(0),
        threads: node.shards as u64,
        // Each shard listens on the node's port, and with shard ports on its own.
        listening_sockets: node.shards as u64
            * if node.cluster.is_some() || config.shard_port_base.is_some() {
                2
            } else {
                1
            },
        shard: gathered.shard,
        malloced_bytes: gathered.store.limit_maxbytes,
        store: gathered.store,
        conns: Vec::new(),
        items_age_secs: gathered
            .oldest_access
            .map_or(0, |at| u64::from(clock.rel_secs.saturating_sub(at))),
        per_shard: gathered.per_shard,
        latency: gathered.latency,
        forwarded_to: gathered.forwarded_to,
        hot_keys: Vec::new(),
        settings: settings(ctx),
    }
}

/// Asks every other shard for its counters, and sums them with this one's.
async fn gather(ctx: &ShardCtx, clock: &Clock, oldest_access: bool) -> Gathered {
    let (own_shard, own_store, mut oldest) = with_state(|s| {
        let oldest = oldest_access
            .then(|| s.store.oldest_access(clock.rel_secs))
            .flatten();
        (s.stats, s.store.stats(), oldest)
    });
    let mut latency = state::latency();
    let mut forwarded_to = ctx
        .cluster
        .as_ref()
        .map_or_else(Vec::new, |c| c.forwarded_to());
    let mut per_shard = vec![Default::default(); ctx.node.shards];
    per_shard[ctx.id as usize] = (own_shard, own_store);
    // ask_all answers in shard order, this shard left out.
    let others = (0..ctx.node.shards).filter(|&j| j != ctx.id as usize);
    for (j, answer) in others.zip(ctx.ask_all(|| Ask::Stats { oldest_access }).await) {
        if let Answer::Stats {
            shard: other,
            store: other_store,
            latency: other_latency,
            forwarded_to: other_forwarded,
            oldest_access: other_oldest,
        } = answer
        {
            oldest = match (oldest, other_oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            per_shard[j] = (*other, other_store);
            latency.add(&other_latency);
            forwarded_to.extend(other_forwarded);
        }
    }
    let (mut shard, mut store) = (ShardStats::default(), StoreStats::default());
    for (s, st) in &per_shard {
        shard.add(s);
        store.add(st);
    }
    forwarded_to.sort_unstable();
    forwarded_to.dedup_by(|b, a| {
        let same = a.0 == b.0;
        if same {
            a.1 += b.1;
        }
        same
    });
    Gathered {
        per_shard,
        shard,
        store,
        latency,
        forwarded_to,
        oldest_access: oldest,
    }
}

/// The settings `stats settings` shows.
fn settings(ctx: &ShardCtx) -> Settings {
    let config = &ctx.node.config;
    Settings {
        max_bytes: config.memory_limit_bytes as u64,
        max_connections: config.conn_limit as u64,
        tcp_port: config.port,
        listen: config.listen.clone(),
        threads: ctx.node.shards as u64,
        item_size_max: config.item_size_max_bytes as u64,
        evictions_on: config.when_full == crate::storage::WhenFull::Evict,
        shutdown_allowed: config.shutdown == ShutdownCommand::Allowed,
        verbosity: config.verbosity as u32,
        tcp_backlog: config.listen_backlog as u32,
        binding_protocol: config.protocol.memcached_name(),
        flush_enabled: config.flush == FlushCommand::Allowed,
        sasl: config.sasl_pwdb.is_some(),
        auth_file: config
            .auth_file
            .as_ref()
            .map(|path| path.display().to_string()),
    }
}
