//! Where a shard's connections wait for answers from other shards.
//!
//! A connection takes a slot, sends its request with the slot's number, and
//! awaits [`Waiters::wait`]; the task that drains the reply channel from that
//! shard fills the slot and wakes it. Slots are reused, so the table is as large
//! as the most requests ever outstanding at once, not the number ever sent.

use super::messages::Answer;
use crate::limits::SHARD_ANSWER_TIMEOUT_SECS;
use glommio::timer::Timer;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

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
}

impl Waiters {
    /// Takes a slot for one request.
    pub fn take_slot(&self) -> u32 {
        let mut slots = self.slots.borrow_mut();
        let slot = match self.free.borrow_mut().pop() {
            Some(slot) => slot,
            None => {
                slots.push(Slot::Free);
                (slots.len() - 1) as u32
            }
        };
        slots[slot as usize] = Slot::Waiting(None);
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

    /// Waits for the answer in `slot`, then frees the slot.
    ///
    /// # Panics
    /// When no answer comes within [`SHARD_ANSWER_TIMEOUT_SECS`]: the other
    /// shard is hung, and the supervisor stops the node.
    pub fn wait(self: &Rc<Self>, slot: u32) -> Wait {
        self.wait_at_most(slot, Duration::from_secs(SHARD_ANSWER_TIMEOUT_SECS))
    }

    fn wait_at_most(self: &Rc<Self>, slot: u32, timeout: Duration) -> Wait {
        Wait {
            waiters: self.clone(),
            slot,
            done: false,
            timeout,
            timer: None,
        }
    }
}

pub struct Wait {
    waiters: Rc<Waiters>,
    slot: u32,
    done: bool,
    timeout: Duration,
    /// Made when the answer is not there at the first poll.
    timer: Option<Timer>,
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
                drop(slots);
                let timeout = self.timeout;
                let timer = self.timer.get_or_insert_with(|| Timer::new(timeout));
                if Pin::new(timer).poll(cx).is_ready() {
                    panic!("no answer to slot {slot} within {timeout:?}: a shard is hung");
                }
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
    fn a_wait_with_no_answer_panics_after_its_timeout() {
        let outcome = std::thread::spawn(|| {
            glommio::LocalExecutorBuilder::default()
                .io_memory(crate::limits::IO_MEMORY_BYTES)
                .make()
                .expect("an executor")
                .run(async {
                    let waiters = Rc::new(Waiters::default());
                    let slot = waiters.take_slot();
                    waiters.wait_at_most(slot, Duration::from_millis(20)).await
                })
        })
        .join();
        let panic = outcome.expect_err("the wait ended without a panic");
        let text = crate::runtime::supervisor::panic_text(panic.as_ref());
        assert!(text.contains("a shard is hung"), "{text}");
    }

    #[test]
    fn an_answer_in_time_is_returned() {
        let answer = glommio::LocalExecutorBuilder::default()
            .io_memory(crate::limits::IO_MEMORY_BYTES)
            .make()
            .expect("an executor")
            .run(async {
                let waiters = Rc::new(Waiters::default());
                let slot = waiters.take_slot();
                let wait = waiters.wait_at_most(slot, Duration::from_secs(5));
                waiters.complete(slot, Answer::Done);
                wait.await
            });
        assert!(matches!(answer, Answer::Done));
    }
}
