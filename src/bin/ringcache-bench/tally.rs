//! The counters each worker keeps, summed once the run ends, and the phases
//! the run goes through.

use crate::LATENCY_MAX_NS;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, AtomicU8};

/// What one worker counted in the measured phase.
pub(crate) struct Tally {
    pub(crate) gets: u64,
    pub(crate) sets: u64,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) errors: u64,
    pub(crate) latency_ns: Histogram<u64>,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            gets: 0,
            sets: 0,
            hits: 0,
            misses: 0,
            errors: 0,
            latency_ns: Histogram::new_with_bounds(1, LATENCY_MAX_NS, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.gets + self.sets
    }

    pub(crate) fn reset(&mut self) {
        self.gets = 0;
        self.sets = 0;
        self.hits = 0;
        self.misses = 0;
        self.errors = 0;
        self.latency_ns.reset();
    }

    pub(crate) fn add(&mut self, other: &Tally) {
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
        self.latency_ns
            .add(&other.latency_ns)
            .expect("histograms share their bounds");
    }
}

/// Phases the main thread announces to the workers.
pub(crate) const PHASE_WARMUP: u8 = 0;
pub(crate) const PHASE_MEASURE: u8 = 1;
pub(crate) const PHASE_STOP: u8 = 2;

/// What the main thread shares with the workers.
pub(crate) struct Shared {
    pub(crate) phase: AtomicU8,
    /// Replies each worker has seen in the measured phase, for the progress line.
    pub(crate) done: Vec<AtomicU64>,
}
