//! A worker thread: its connections driven through one epoll set. Does I/O.

use crate::args::Plan;
use crate::conn::Conn;
use crate::tally::{Shared, Tally, PHASE_MEASURE, PHASE_STOP};
use crate::{DRAIN_TIMEOUT, EPOLL_WAIT_MS};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One worker: its connections, one epoll set, and its tally.
pub(crate) struct Worker {
    pub(crate) conns: Vec<Conn>,
    /// Links per connection: an epoll token is `connection * this + link`.
    pub(crate) links_per_conn: usize,
    pub(crate) epoll: Epoll,
    pub(crate) tally: Tally,
}

impl Worker {
    pub(crate) fn new(plan: &Plan, thread: usize) -> Result<Worker, String> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let links_per_conn = plan.links_per_conn();
        let mut conns = Vec::with_capacity(plan.clients);
        for c in 0..plan.clients {
            let index = thread * plan.clients + c;
            let addrs = if plan.route.is_some() {
                &plan.servers[..]
            } else {
                let i = index % plan.servers.len();
                &plan.servers[i..i + 1]
            };
            let conn = Conn::open(addrs, plan, index)?;
            for (l, link) in conn.links.iter().enumerate() {
                let token = (c * links_per_conn + l) as u64;
                epoll
                    .add(&link.stream, EpollEvent::new(EpollFlags::EPOLLIN, token))
                    .map_err(|e| format!("epoll add: {e}"))?;
            }
            conns.push(conn);
        }
        Ok(Worker {
            conns,
            links_per_conn,
            epoll,
            tally: Tally::new(),
        })
    }

    pub(crate) fn set_write_interest(
        &mut self,
        c: usize,
        l: usize,
        wants: bool,
    ) -> Result<(), String> {
        let link = &mut self.conns[c].links[l];
        if link.wants_write == wants {
            return Ok(());
        }
        link.wants_write = wants;
        let flags = if wants {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT
        } else {
            EpollFlags::EPOLLIN
        };
        let token = (c * self.links_per_conn + l) as u64;
        self.epoll
            .modify(&link.stream, &mut EpollEvent::new(flags, token))
            .map_err(|e| format!("epoll modify: {e}"))
    }

    /// Writes what connection `c` has buffered on each of its links, and asks
    /// to hear when a link can take the rest.
    pub(crate) fn flush(&mut self, c: usize) -> Result<(), String> {
        for l in 0..self.conns[c].links.len() {
            let all_out = self.conns[c].links[l].flush()?;
            self.set_write_interest(c, l, !all_out)?;
        }
        Ok(())
    }

    /// Drives every connection until none has anything to send or await.
    /// `phase`: `None` runs to completion (prefill, counted runs); otherwise the
    /// run counts only in the measured phase and stops sending at PHASE_STOP.
    pub(crate) fn run(
        &mut self,
        plan: &Plan,
        values: &[u8],
        shared: &Shared,
        thread: usize,
        timed: bool,
    ) -> Result<(), String> {
        let mut events = vec![EpollEvent::empty(); self.conns.len() * self.links_per_conn];
        let mut phase = if timed {
            shared.phase.load(Ordering::Acquire)
        } else {
            PHASE_MEASURE
        };
        let mut counting = phase == PHASE_MEASURE;
        let mut stop_at: Option<Instant> = None;
        let now = Instant::now();
        for c in 0..self.conns.len() {
            self.conns[c].refill(plan, values, now);
            self.flush(c)?;
        }
        loop {
            if timed {
                let seen = shared.phase.load(Ordering::Acquire);
                if seen != phase {
                    phase = seen;
                    if phase == PHASE_MEASURE {
                        self.tally.reset();
                        counting = true;
                    } else if phase == PHASE_STOP {
                        // Replies to requests sent before the stop still count:
                        // the window was full when the clock stopped.
                        counting = false;
                        stop_at = Some(Instant::now() + DRAIN_TIMEOUT);
                        for conn in &mut self.conns {
                            conn.quota = Some(0);
                        }
                    }
                }
            }
            if self.conns.iter().all(Conn::idle) {
                return Ok(());
            }
            if let Some(t) = stop_at {
                if Instant::now() > t {
                    return Err("replies still missing 5 s after the end of the run".into());
                }
            }
            let n = self
                .epoll
                .wait(&mut events, EpollTimeout::from(EPOLL_WAIT_MS))
                .or_else(|e| {
                    if e == nix::errno::Errno::EINTR {
                        Ok(0)
                    } else {
                        Err(format!("epoll wait: {e}"))
                    }
                })?;
            let now = Instant::now();
            for ev in &events[..n] {
                let token = ev.data() as usize;
                let (c, l) = (token / self.links_per_conn, token % self.links_per_conn);
                let flags = ev.events();
                if flags
                    .intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP)
                {
                    self.conns[c].read_replies(l, plan, &mut self.tally, counting, now)?;
                }
                let conn = &mut self.conns[c];
                if conn.no_partial_write() {
                    conn.refill(plan, values, now);
                }
                self.flush(c)?;
            }
            if counting {
                shared.done[thread].store(self.tally.requests(), Ordering::Relaxed);
            }
        }
    }
}
