//! memcached's expiry times (pure).
//!
//! The store counts time in seconds since the process started (`rel`). A client's
//! exptime is relative up to 30 days, an absolute Unix time past that, and
//! negative means already expired.

use crate::limits::REALTIME_MAXDELTA_SECS;

/// The two clocks a shard needs: relative seconds for the store, and the Unix
/// time the relative clock counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Seconds since `process_started_unix`; never 0 or 1 once running.
    pub rel_secs: u32,
    /// Unix time at which `rel_secs` was 0.
    pub process_started_unix: i64,
}

impl Clock {
    pub fn unix_secs(&self) -> i64 {
        self.process_started_unix + self.rel_secs as i64
    }
}

/// memcached's `realtime()`: a client exptime to a relative expiry (0: never; 1: already).
pub fn expiry(exptime: i64, clock: &Clock) -> u32 {
    if exptime == 0 {
        return 0;
    }
    if exptime < 0 {
        return 1;
    }
    if exptime > REALTIME_MAXDELTA_SECS {
        if exptime <= clock.process_started_unix {
            return 1;
        }
        return (exptime - clock.process_started_unix).min(u32::MAX as i64) as u32;
    }
    (exptime + clock.rel_secs as i64).min(u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: Clock = Clock {
        rel_secs: 100,
        process_started_unix: 1_700_000_000,
    };

    #[test]
    fn zero_never_expires() {
        assert_eq!(expiry(0, &CLOCK), 0);
    }

    #[test]
    fn negative_is_already_expired() {
        assert_eq!(expiry(-1, &CLOCK), 1);
    }

    #[test]
    fn up_to_thirty_days_is_relative() {
        assert_eq!(expiry(10, &CLOCK), 110);
        assert_eq!(
            expiry(REALTIME_MAXDELTA_SECS, &CLOCK),
            100 + REALTIME_MAXDELTA_SECS as u32
        );
    }

    #[test]
    fn past_thirty_days_is_absolute_unix_time() {
        assert_eq!(expiry(1_700_000_500, &CLOCK), 500);
        assert_eq!(expiry(REALTIME_MAXDELTA_SECS + 1, &CLOCK), 1);
    }
}
