//! Where a shard's connections wait for answers from other shards.
//!
//! A connection takes a slot, sends its request with the slot's number, and
//! awaits [`Waiters::wait`]; the task that drains the reply channel from that
//! shard fills the slot and wakes it. Slots are reused, so the table is as large
//! as the most requests ever outstanding at once, not the number ever sent.

use super::messages::Answer;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

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
    pub fn wait(self: &Rc<Self>, slot: u32) -> Wait {
        Wait {
            waiters: self.clone(),
            slot,
            done: false,
        }
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
