//! How one shard wakes another that sleeps in its socket ring.
//!
//! A shard with recent work waits for its next completion inside its own ring
//! ([`uring`](super::uring)) instead of parking through glommio, whose park and
//! wake cost several system calls and a `membarrier` each. glommio does not know
//! that shard is asleep, so a message put on one of the shard's channels would
//! not wake it: the sender rings the shard's doorbell after every send, and the
//! shard's ring has a read of the doorbell's eventfd armed while it sleeps.
//!
//! The two sides order themselves as glommio's own sleep notifier does, with
//! sequentially consistent operations in place of its `membarrier`: the sender
//! counts its message, then looks whether the shard sleeps; the shard marks
//! itself asleep, then looks whether the count moved since it last let glommio
//! take its channels. One of them sees the other, so no message is left behind
//! a sleeping shard. Only a sender that finds the shard asleep writes the
//! eventfd (one system call), and only the first of those per sleep.
//!
//! Bottom layer: imports nothing else of `runtime`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One shard's doorbell, shared by every shard of the node.
pub struct Doorbell {
    /// The shard sleeps in its ring, the doorbell's read armed.
    sleeping: AtomicBool,
    /// Messages sent to the shard since it started.
    sent: AtomicU64,
    /// The same, per channel into the shard (see [`Doorbell::channel`]).
    sent_on: Vec<AtomicU64>,
    eventfd: OwnedFd,
}

impl Doorbell {
    /// The doorbell of one shard of a node of `shards`.
    pub fn new(shards: usize) -> std::io::Result<Doorbell> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        // Blocking: io_uring answers a read of a non-blocking descriptor that has
        // nothing with EAGAIN instead of waiting for it.
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC)?;
        Ok(Doorbell {
            sleeping: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            sent_on: (0..2 * shards).map(|_| AtomicU64::new(0)).collect(),
            eventfd: OwnedFd::from(fd),
        })
    }

    /// The number of the channel into this shard that carries requests (or
    /// answers) from shard `from`.
    pub fn channel(from: usize, answers: bool) -> usize {
        2 * from + answers as usize
    }

    /// A message was put on `channel` into the shard: wakes the shard if it sleeps.
    pub fn ring(&self, channel: usize) {
        self.sent_on[channel].fetch_add(1, Ordering::SeqCst);
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            let one = 1u64.to_ne_bytes();
            // A full counter (2^64 - 2 unread signals) cannot happen: the
            // shard reads it as soon as it wakes.
            let _ = nix::unistd::write(&self.eventfd, &one);
        }
    }

    /// The messages sent so far: the shard reads this before it wakes its
    /// receivers, and sleeps only while it has not moved.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// The messages sent so far on `channel`: one its receiver has not taken
    /// is there to take.
    pub fn sent_on(&self, channel: usize) -> u64 {
        self.sent_on[channel].load(Ordering::SeqCst)
    }

    /// Marks the shard asleep, unless a message came after `seen`; whether it may
    /// sleep. A `true` must be followed by [`Doorbell::awake`] once it wakes.
    pub fn try_sleep(&self, seen: u64) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.sent.load(Ordering::SeqCst) != seen {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The shard is awake: senders need not write the eventfd.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// The eventfd the shard's ring reads while it sleeps.
    pub fn fd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::Doorbell;

    /// Whether the eventfd was written since last read (and reads it).
    fn signalled(bell: &Doorbell) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::BorrowedFd;
        // SAFETY: the descriptor lives as long as `bell`.
        let fd = unsafe { BorrowedFd::borrow_raw(bell.fd()) };
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).unwrap() == 0 {
            return false;
        }
        let mut buf = [0u8; 8];
        nix::unistd::read(bell.fd(), &mut buf).is_ok()
    }

    #[test]
    fn a_shard_does_not_sleep_past_a_message_sent_before_it_looked() {
        let bell = Doorbell::new(2).unwrap();
        let seen = bell.sent();
        bell.ring(Doorbell::channel(1, false));
        assert!(!bell.try_sleep(seen), "a message came after `seen`");
        assert!(!signalled(&bell), "nobody slept, so nobody was woken");
        assert!(bell.try_sleep(bell.sent()));
    }

    #[test]
    fn a_message_to_a_sleeping_shard_writes_its_eventfd_once() {
        let bell = Doorbell::new(2).unwrap();
        assert!(bell.try_sleep(bell.sent()));
        bell.ring(Doorbell::channel(1, false));
        bell.ring(Doorbell::channel(1, true));
        assert!(signalled(&bell));
        assert!(
            !signalled(&bell),
            "the second message found it woken already"
        );
        bell.awake();
        bell.ring(Doorbell::channel(1, true));
        assert!(!signalled(&bell), "an awake shard is not signalled");
        assert_eq!(bell.sent_on(Doorbell::channel(1, false)), 1);
        assert_eq!(bell.sent_on(Doorbell::channel(1, true)), 2);
        assert_eq!(bell.sent_on(Doorbell::channel(0, false)), 0);
    }
}
