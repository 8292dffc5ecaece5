//! Counters kept by each shard and summed only when a client asks (pure).
//!
//! Each shard owns one [`ShardStats`]; `stats` collects a copy from every shard
//! and adds them with [`ShardStats::add`]. Names follow memcached's `stats` keys.

use serde::Serialize;

/// Per-shard command and connection counters, under memcached's names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    pub curr_connections: u64,
    pub total_connections: u64,
    pub rejected_connections: u64,
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_flush: u64,
    pub cmd_touch: u64,
    /// `me` commands (memcached 1.6.18 counts only those as `cmd_meta`).
    pub cmd_meta: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    /// Stores refused before their data was read because the item exceeds `-I`.
    pub store_too_large: u64,
    /// Stores refused because no room could be made (`-M`, or nothing evictable).
    pub store_no_memory: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Requests this shard sent to another shard of the node, and received from one.
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    /// Of `forwarded_in`: replies this shard sent on the client's connection
    /// itself, the connection lent for a lone request (`runtime::gate`).
    pub forwarded_sent: u64,
    /// Times a connection's receiving stopped because it held the most received,
    /// unread bytes a connection may hold (the socket ring's bound).
    pub receive_pauses: u64,
}

impl ShardStats {
    /// Adds another shard's counters to these.
    pub fn add(&mut self, other: &ShardStats) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f += other.$f; )* };
        }
        sum!(
            curr_connections,
            total_connections,
            rejected_connections,
            cmd_get,
            cmd_set,
            cmd_flush,
            cmd_touch,
            cmd_meta,
            get_hits,
            get_misses,
            get_expired,
            get_flushed,
            delete_hits,
            delete_misses,
            incr_hits,
            incr_misses,
            decr_hits,
            decr_misses,
            cas_hits,
            cas_misses,
            cas_badval,
            touch_hits,
            touch_misses,
            store_too_large,
            store_no_memory,
            bytes_read,
            bytes_written,
            forwarded_out,
            forwarded_in,
            forwarded_sent,
            receive_pauses
        );
    }

    /// `stats reset`: zeroes the counters but keeps the gauges (current connections).
    pub fn reset(&mut self) {
        *self = ShardStats {
            curr_connections: self.curr_connections,
            ..ShardStats::default()
        };
    }
}

/// Highest latency a shard records, in microseconds; a slower read counts as this.
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// Upper bounds (microseconds) of the latency buckets `stats latency` reports,
/// and hence of the Prometheus histogram's `le` buckets (in seconds).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000,
];

/// Quantiles `stats latency` reports from the full histogram.
pub const LATENCY_QUANTILES: [(f64, &str); 4] =
    [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p999")];

/// How long one shard took to serve its clients' reads: one observation per
/// read, from its bytes arriving to every reply of it being ready to send.
///
/// An HDR histogram (two significant digits, 1 µs to [`LATENCY_MAX_US`]) plus
/// the exact sum; recording is a few arithmetic operations and no allocation.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: hdrhistogram::Histogram<u64>,
    sum_us: u64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            histogram: hdrhistogram::Histogram::new_with_bounds(1, LATENCY_MAX_US, 2)
                .expect("valid histogram bounds"),
            sum_us: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, micros: u64) {
        let micros = micros.clamp(1, LATENCY_MAX_US);
        self.histogram.saturating_record(micros);
        self.sum_us += micros;
    }

    /// Adds another shard's observations to these.
    pub fn add(&mut self, other: &Latency) {
        // Same bounds on every shard, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum_us += other.sum_us;
    }

    pub fn reset(&mut self) {
        self.histogram.reset();
        self.sum_us = 0;
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Observations at or below `micros` (within the histogram's 1% precision).
    pub fn count_at_most(&self, micros: u64) -> u64 {
        self.histogram.count_between(0, micros)
    }

    /// The latency at `quantile` (0 to 1), in microseconds; 0 with no observations.
    pub fn quantile_us(&self, quantile: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_quantile(quantile)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_count_what_fell_at_or_below_them() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for us in [5, 20, 20, 700] {
            a.record(us);
        }
        b.record(3_000_000);
        a.add(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.sum_us(), 5 + 20 + 20 + 700 + 3_000_000);
        assert_eq!(a.count_at_most(10), 1);
        assert_eq!(a.count_at_most(25), 3);
        assert_eq!(a.count_at_most(1_000), 4);
        assert_eq!(a.count_at_most(LATENCY_MAX_US), 5);
        assert_eq!(a.quantile_us(0.5), 20);
        a.reset();
        assert_eq!((a.count(), a.sum_us(), a.quantile_us(0.99)), (0, 0, 0));
    }
}
