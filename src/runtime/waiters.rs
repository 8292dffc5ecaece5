//! Where a shard's connections wait for answers from other shards.
//!
//! A connection takes a slot, sends its request with the slot's number, and
//! awaits [`Waiters::wait`]; the task that drains the reply channel from that
//! shard fills the slot and wakes it. Slots are reused, so the table is as large
//! as the most requests ever outstanding at once, not the number ever sent.
//!
//! Layer: just above the plain types, beside `siblings`, which holds the
//! table; imports only [`messages`](super::messages).

use super::messages::Answer;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

// `Ready` holds an answer in place: boxing it would allocate per crossing.
#[allow(clippy::large_enum_variant)]
enum Slot {
    Free,
    Waiting(Option<Waker>),
    Ready(Answer),
    /// The waiter went away (its connection closed); drop the answer when it comes.
    Abandoned,
}

/// One shard's table of outstanding cross-shard requests.
#[derive(Default)]
pub struct Waiters {
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// Per slot: the number of the request that took it last, so a
    /// [`Watchdog`] tells a request that waits long from slots reused often.
    requests: RefCell<Vec<u64>>,
    sent: Cell<u64>,
}

impl Waiters {
    /// Takes a slot for one request.
    pub fn take_slot(&self) -> u32 {
        let mut slots = self.slots.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                slots.push(Slot::Free);
                self.requests.borrow_mut().push(0);
                (slots.len() - 1) as u32
            }
        };
        slots[slot as usize] = Slot::Waiting(None);
        self.sent.set(self.sent.get() + 1);
        self.requests.borrow_mut()[slot as usize] = self.sent.get();
        slot
    }

    /// Delivers an answer to its slot and wakes the waiter.
    pub fn complete(&self, slot: u32, answer: Answer) {
        let mut slots = self.slots.borrow_mut();
        let entry = &mut slots[slot as usize];
        match std::mem::replace(entry, Slot::Ready(answer)) {
            Slot::Waiting(Some(waker)) => waker.wake(),
            Slot::Waiting(None) => {}
            Slot::Abandoned => {
                *entry = Slot::Free;
                self.free.borrow_mut().push(slot);
            }
            Slot::Free | Slot::Ready(_) => panic!("answer for slot {slot} that was not waiting"),
        }
    }

    /// Waits for the answer in `slot`, then frees the slot. A [`Watchdog`]
    /// stops the node if the answer never comes.
    pub fn wait(self: &Rc<Self>, slot: u32) -> Wait {
        Wait {
            waiters: self.clone(),
            slot,
            done: false,
        }
    }
}

/// Notices a request to another shard that has waited too long for its
/// answer: that shard is hung, and half a node is worse than a restart.
/// Checked now and then by the shard's housekeeping loop, so waiting costs
/// the request path nothing (no timer per request).
pub struct Watchdog {
    timeout: Duration,
    /// Slot -> (request number, when it was first seen waiting).
    waiting: HashMap<u32, (u64, Instant)>,
}

impl Watchdog {
    pub fn new(timeout: Duration) -> Watchdog {
        Watchdog {
            timeout,
            waiting: HashMap::new(),
        }
    }

    /// The slot of a request that has been waiting longer than the timeout
    /// at `now`, if any.
    pub fn overdue(&mut self, waiters: &Waiters, now: Instant) -> Option<u32> {
        let slots = waiters.slots.borrow();
        let requests = waiters.requests.borrow();
        let mut overdue = None;
        for (slot, entry) in slots.iter().enumerate() {
            let slot = slot as u32;
            if !matches!(entry, Slot::Waiting(_) | Slot::Abandoned) {
                self.waiting.remove(&slot);
                continue;
            }
            let request = requests[slot as usize];
            match self.waiting.get(&slot) {
                Some(&(seen, since)) if seen == request => {
                    if now.duration_since(since) > self.timeout {
                        overdue.get_or_insert(slot);
                    }
                }
                _ => {
                    self.waiting.insert(slot, (request, now));
                }
            }
        }
        overdue
    }
}

pub struct Wait {
    waiters: Rc<Waiters>,
    slot: u32,
    done: bool,
}

impl Future for Wait {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let slot = self.slot;
        let mut slots = self.waiters.slots.borrow_mut();
        let entry = &mut slots[slot as usize];
        match std::mem::replace(entry, Slot::Free) {
            Slot::Ready(answer) => {
                drop(slots);
                self.waiters.free.borrow_mut().push(slot);
                self.done = true;
                Poll::Ready(answer)
            }
            Slot::Waiting(_) => {
                *entry = Slot::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            Slot::Free | Slot::Abandoned => panic!("waiting on slot {slot} that was not taken"),
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slots = self.waiters.slots.borrow_mut();
        let entry = &mut slots[self.slot as usize];
        match entry {
            Slot::Ready(_) => {
                *entry = Slot::Free;
                drop(slots);
                self.waiters.free.borrow_mut().push(self.slot);
            }
            _ => *entry = Slot::Abandoned,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_names_a_request_unanswered_past_its_timeout() {
        let waiters = Waiters::default();
        let mut watchdog = Watchdog::new(Duration::from_secs(30));
        let start = Instant::now();
        let slot = waiters.take_slot();
        assert_eq!(watchdog.overdue(&waiters, start), None);
        assert_eq!(
            watchdog.overdue(&waiters, start + Duration::from_secs(29)),
            None
        );
        assert_eq!(
            watchdog.overdue(&waiters, start + Duration::from_secs(31)),
            Some(slot)
        );
    }

    #[test]
    fn the_watchdog_does_not_count_a_reused_slot_as_one_long_wait() {
        let waiters = Rc::new(Waiters::default());
        let mut watchdog = Watchdog::new(Duration::from_secs(30));
        let start = Instant::now();
        let slot = waiters.take_slot();
        assert_eq!(watchdog.overdue(&waiters, start), None);
        // Answered, and the slot taken by the next request.
        waiters.complete(slot, Answer::Done);
        drop(waiters.wait(slot));
        assert_eq!(waiters.take_slot(), slot);
        assert_eq!(
            watchdog.overdue(&waiters, start + Duration::from_secs(20)),
            None
        );
        assert_eq!(
            watchdog.overdue(&waiters, start + Duration::from_secs(40)),
            None
        );
        assert_eq!(
            watchdog.overdue(&waiters, start + Duration::from_secs(51)),
            Some(slot)
        );
    }
}
