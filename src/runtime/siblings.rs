//! This shard's way to the other shards of its node: a bounded channel to
//! each, and the table where their answers wait ([`Waiters`]).
//!
//! Layer: just above the plain types, beside [`waiters`](super::waiters); it
//! awaits channel sends and answers but owns no socket, and imports only
//! `messages`, `doorbell` and `waiters`.

use super::doorbell::Doorbell;
use super::messages::{Answer, Ask, ToShard};
use super::waiters::Waiters;
use glommio::channels::shared_channel::ConnectedSender;
use std::rc::Rc;
use std::sync::Arc;

/// The other shards of this node, as one shard reaches them.
pub struct Siblings {
    /// This shard's number on its node.
    pub id: u32,
    /// `requests_to[j]`: requests from this shard to shard j (None for itself).
    pub requests_to: Vec<Option<ConnectedSender<ToShard>>>,
    /// `doorbells[j]`: rung after each message to shard j (see [`doorbell`](super::doorbell)).
    pub doorbells: Vec<Arc<Doorbell>>,
    pub waiters: Rc<Waiters>,
}

impl Siblings {
    /// Sends `ask` (made per shard) to every other shard and waits for all answers.
    pub async fn ask_all(&self, mut ask: impl FnMut() -> Ask) -> Vec<Answer> {
        let mut waits = Vec::with_capacity(self.requests_to.len());
        for (to, sender) in self.requests_to.iter().enumerate() {
            let Some(sender) = sender else { continue };
            let slot = self.waiters.take_slot();
            let wait = self.waiters.wait(slot);
            if sender.send(ToShard { slot, ask: ask() }).await.is_ok() {
                self.doorbells[to].ring(Doorbell::channel(self.id as usize, false));
                waits.push(wait);
            } else {
                log::warn!("shard {} did not take a request from shard {}", to, self.id);
            }
        }
        let mut answers = Vec::with_capacity(waits.len());
        for wait in waits {
            answers.push(wait.await);
        }
        answers
    }
}
