//! A history of client operations on a cluster, and the checker that judges it
//! (pure: events and final reads in, a list of anomalies out; no I/O, no clock).
//!
//! Every operation is recorded with the client and node it went through, what
//! was sent, the reply, and when it was invoked and completed (microseconds
//! from one start). A write whose reply was `SERVER_ERROR`, a timeout, a closed
//! connection or anything unexpected is of *unknown outcome*: it may have taken
//! effect at any time after it was invoked, or never.
//!
//! The checker treats each ordinary key as a register whose initial value is
//! "absent", and each counter as a number that only grows by `incr`. Values
//! are unique per write, so a read names the write it saw. A read of a write
//! `W` is legal unless some other write acknowledged before the read was
//! invoked began after `W` completed (`W` was then overwritten before the read
//! began: real-time order, per key). What it reports:
//!
//! - **stale**: a read during the run that saw an overwritten value;
//! - **lost**: a value read at the end that an acknowledged write had
//!   overwritten (or a miss where an acknowledged set should be);
//! - **resurrected**: a value read at the end that an acknowledged delete
//!   following it had removed, with no later write of it (a read during the
//!   run that sees such a value is stale);
//! - **counters**: a counter's final value outside
//!   `[initial + acked, initial + acked + unknown]`, an `incr` reply that no
//!   order of the increments explains, two `incr`s answered alike, or a
//!   counter that went missing;
//! - **divergent**: nodes that answer differently for a key at the end;
//! - **copies**: summed `curr_items` that is not R x live keys once settled;
//! - **configs**: nodes that end at different epochs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Microseconds since the history's start.
pub type Micros = u64;

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `set <key> 0 0 <len>` with a value no other write uses.
    Set {
        value: String,
    },
    /// `cas <key> 0 0 <len> <cas>`, with the CAS a `gets` returned.
    Cas {
        value: String,
        cas: u64,
    },
    Delete,
    /// `incr <key> <delta>` on a counter.
    Incr {
        delta: u64,
    },
    /// `get` or `gets`.
    Read,
}

/// What came back, as far as the checker cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Stored,
    Exists,
    NotFound,
    NotStored,
    Deleted,
    /// The new value of a counter.
    Number(u64),
    /// A hit (`cas` set for `gets`).
    Value {
        value: String,
        cas: Option<u64>,
    },
    Miss,
    /// `SERVER_ERROR`, a timeout, a closed connection or an unexpected line:
    /// the text, for the report.
    Unknown(String),
}

/// One operation, from invocation to completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub client: u32,
    /// The node (endpoint number) the request went to.
    pub node: u32,
    pub key: String,
    pub op: Op,
    pub reply: Reply,
    pub invoke_us: Micros,
    pub complete_us: Micros,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}..{}us client {} via node {}] {:?} {} -> {:?}",
            self.invoke_us, self.complete_us, self.client, self.node, self.op, self.key, self.reply
        )
    }
}

/// What one node answered for a key at the end: a value, a miss (`None`), or
/// why no answer came.
pub type FinalRead = Result<Option<String>, String>;

/// Everything the checker judges.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub events: Vec<Event>,
    /// Counter keys and the value each held, acknowledged, before any event.
    pub counters: BTreeMap<String, u64>,
    /// key -> (node, what it answered), once the cluster settled.
    pub finals: BTreeMap<String, Vec<(u32, FinalRead)>>,
    /// (expected R x live keys, summed `curr_items` last seen), once settled.
    pub copies: Option<(u64, u64)>,
    /// (node, epoch or why none), once settled.
    pub epochs: Vec<(u32, Result<u64, String>)>,
}

/// The kinds of anomaly, in the order reports list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Lost,
    Stale,
    Counters,
    Resurrected,
    Divergent,
    Copies,
    Configs,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Lost,
        Kind::Stale,
        Kind::Counters,
        Kind::Resurrected,
        Kind::Divergent,
        Kind::Copies,
        Kind::Configs,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Lost => "lost",
            Kind::Stale => "stale",
            Kind::Counters => "counters",
            Kind::Resurrected => "resurrected",
            Kind::Divergent => "divergent",
            Kind::Copies => "copies",
            Kind::Configs => "configs",
        }
    }
}

/// One thing the history should not show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: Kind,
    /// The key, or empty for cluster-wide checks.
    pub key: String,
    /// When the read or reply that shows it completed; `None` for the end.
    pub at_us: Option<Micros>,
    pub detail: String,
}

/// The checker's findings.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub anomalies: Vec<Anomaly>,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.anomalies.iter().filter(|a| a.kind == kind).count()
    }

    pub fn is_clean(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// `lost=0 stale=0 ...`, one field per kind.
    pub fn counts_line(&self) -> String {
        Kind::ALL
            .iter()
            .map(|&k| format!("{}={}", k.name(), self.count(k)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Up to `per_kind` anomalies of each kind, one per line.
    pub fn sample(&self, per_kind: usize) -> String {
        let mut out = String::new();
        for kind in Kind::ALL {
            for a in self
                .anomalies
                .iter()
                .filter(|a| a.kind == kind)
                .take(per_kind)
            {
                out.push_str(&format!("{} {}: {}\n", kind.name(), a.key, a.detail));
            }
        }
        out
    }

    fn push(&mut self, kind: Kind, key: &str, detail: String) {
        self.push_at(kind, key, None, detail);
    }

    fn push_at(&mut self, kind: Kind, key: &str, at_us: Option<Micros>, detail: String) {
        self.anomalies.push(Anomaly {
            kind,
            key: key.to_string(),
            at_us,
            detail,
        });
    }
}

/// The events on `key`, in order of invocation, as lines: those invoked in
/// the `window_us` before `at_us`, or the last `max` when `at_us` is `None`
/// (at most `max` either way, the latest kept).
pub fn key_history(
    events: &[Event],
    key: &str,
    at_us: Option<Micros>,
    window_us: Micros,
    max: usize,
) -> String {
    let mut on_key: Vec<&Event> = events
        .iter()
        .filter(|e| e.key == key)
        .filter(|e| at_us.is_none_or(|t| e.invoke_us + window_us >= t && e.invoke_us <= t))
        .collect();
    on_key.sort_by_key(|e| e.invoke_us);
    let skip = on_key.len().saturating_sub(max);
    on_key[skip..]
        .iter()
        .map(|e| format!("    {e}\n"))
        .collect()
}

/// Whether a write's effect is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// May take effect at any time after it was invoked, or never.
    Unknown,
}

/// A write to a register key that may have taken effect: `value` `None` is a
/// delete (or the initial absence).
#[derive(Clone, Debug)]
struct Write<'a> {
    value: Option<&'a str>,
    invoke_us: Micros,
    /// `None` while the outcome is unknown: it never surely completed.
    complete_us: Option<Micros>,
    outcome: Outcome,
    /// The event, for reports; `None` for the initial absence.
    event: Option<&'a Event>,
}

impl Write<'_> {
    /// Whether this write surely took effect before `later` began.
    fn precedes(&self, later: &Write) -> bool {
        self.complete_us.is_some_and(|c| c < later.invoke_us)
    }

    fn describe(&self) -> String {
        match self.event {
            Some(e) => e.to_string(),
            None => "the initial absence".to_string(),
        }
    }
}

/// The write of a register key that an event made, if it may have had an
/// effect (a refused `cas` or a `delete` of nothing had none).
fn write_of(event: &Event) -> Option<Write<'_>> {
    let value = match &event.op {
        Op::Set { value } | Op::Cas { value, .. } => Some(value.as_str()),
        Op::Delete => None,
        Op::Incr { .. } | Op::Read => return None,
    };
    let outcome = match (&event.op, &event.reply) {
        (Op::Set { .. } | Op::Cas { .. }, Reply::Stored) => Outcome::Acked,
        (Op::Delete, Reply::Deleted) => Outcome::Acked,
        (Op::Cas { .. }, Reply::Exists | Reply::NotFound) => return None,
        (Op::Delete, Reply::NotFound) => return None,
        _ => Outcome::Unknown,
    };
    Some(Write {
        value,
        invoke_us: event.invoke_us,
        complete_us: (outcome == Outcome::Acked).then_some(event.complete_us),
        outcome,
        event: Some(event),
    })
}

/// Judges everything observed.
pub fn check(observed: &Observed) -> Report {
    let mut report = Report::default();
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for event in &observed.events {
        by_key.entry(&event.key).or_default().push(event);
    }
    let mut keys: BTreeSet<&str> = by_key.keys().copied().collect();
    keys.extend(observed.finals.keys().map(String::as_str));
    let no_finals = Vec::new();
    for key in keys {
        let events = by_key.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let finals = observed.finals.get(key).unwrap_or(&no_finals);
        match observed.counters.get(key) {
            Some(&initial) => check_counter(key, initial, events, finals, &mut report),
            None => check_register(key, events, finals, &mut report),
        }
        check_agreement(key, finals, &mut report);
    }
    for key in observed.counters.keys() {
        if !observed.finals.contains_key(key) && !observed.finals.is_empty() {
            report.push(Kind::Counters, key, "no final read".to_string());
        }
    }
    if let Some((expected, seen)) = observed.copies {
        if expected != seen {
            report.push(
                Kind::Copies,
                "",
                format!("nodes hold {seen} items in all, not {expected} (R x live keys)"),
            );
        }
    }
    check_epochs(&observed.epochs, &mut report);
    report
}

/// Why a read of `value` that was invoked at `invoke_us` (`None`: after
/// everything) and completed at `complete_us` cannot be explained: the
/// acknowledged write that surely overwrote what it saw before it began, or
/// `Err` when no write could have produced it at all. `Ok(None)`: legal.
fn overwritten_before<'a>(
    writes: &'a [Write<'a>],
    value: Option<&str>,
    invoke_us: Option<Micros>,
    complete_us: Option<Micros>,
) -> Result<Option<&'a Write<'a>>, ()> {
    let mut candidates = writes
        .iter()
        .filter(|w| w.value == value)
        .filter(|w| complete_us.is_none_or(|c| w.invoke_us < c))
        .peekable();
    if candidates.peek().is_none() {
        return Err(());
    }
    let mut latest_overwriter: Option<&Write> = None;
    for candidate in candidates {
        let overwriter = writes
            .iter()
            .filter(|w| w.outcome == Outcome::Acked && !same(w, candidate))
            .filter(|w| candidate.precedes(w))
            .filter(|w| match (invoke_us, w.complete_us) {
                (None, _) => true,
                (Some(read), Some(done)) => done < read,
                (Some(_), None) => false,
            })
            .max_by_key(|w| w.complete_us);
        match overwriter {
            None => return Ok(None),
            Some(w) => {
                if latest_overwriter.is_none_or(|l| l.complete_us < w.complete_us) {
                    latest_overwriter = Some(w);
                }
            }
        }
    }
    Ok(latest_overwriter)
}

/// Whether two writes are the same one.
fn same(a: &Write, b: &Write) -> bool {
    match (a.event, b.event) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// The register checks: stale and resurrected reads during the run, lost and
/// resurrected values at the end.
fn check_register(key: &str, events: &[&Event], finals: &[(u32, FinalRead)], report: &mut Report) {
    let mut writes = vec![Write {
        value: None,
        invoke_us: 0,
        complete_us: Some(0),
        outcome: Outcome::Acked,
        event: None,
    }];
    writes.extend(events.iter().filter_map(|e| write_of(e)));
    for event in events.iter().filter(|e| e.op == Op::Read) {
        let seen = match &event.reply {
            Reply::Value { value, .. } => Some(value.as_str()),
            Reply::Miss => None,
            _ => continue,
        };
        match overwritten_before(
            &writes,
            seen,
            Some(event.invoke_us),
            Some(event.complete_us),
        ) {
            Ok(None) => {}
            Ok(Some(by)) => {
                report.push_at(
                    Kind::Stale,
                    key,
                    Some(event.complete_us),
                    format!(
                        "{event} saw a value overwritten before it began by {}",
                        by.describe()
                    ),
                );
            }
            Err(()) => report.push_at(
                Kind::Stale,
                key,
                Some(event.complete_us),
                format!("{event} saw a value no write before it could have stored"),
            ),
        }
    }
    let mut judged: BTreeSet<Option<&str>> = BTreeSet::new();
    for (node, read) in finals {
        let Ok(seen) = read else { continue };
        let seen = seen.as_deref();
        if !judged.insert(seen) {
            continue;
        }
        match overwritten_before(&writes, seen, None, None) {
            Ok(None) => {}
            Ok(Some(by)) => {
                let kind = if seen.is_some() && by.value.is_none() {
                    Kind::Resurrected
                } else {
                    Kind::Lost
                };
                report.push(
                    kind,
                    key,
                    format!(
                        "node {node} ends with {seen:?}, but this was acknowledged after it: {}",
                        by.describe()
                    ),
                );
            }
            Err(()) => report.push(
                Kind::Lost,
                key,
                format!("node {node} ends with {seen:?}, which no client wrote"),
            ),
        }
    }
}

/// The counter checks: every `incr` reply explained by some order of the
/// increments, no two alike, and the final value within the bounds that the
/// acknowledged and unknown increments set.
fn check_counter(
    key: &str,
    initial: u64,
    events: &[&Event],
    finals: &[(u32, FinalRead)],
    report: &mut Report,
) {
    struct Incr<'a> {
        delta: u64,
        acked: bool,
        event: &'a Event,
    }
    let mut incrs = Vec::new();
    for event in events {
        let Op::Incr { delta } = event.op else {
            continue;
        };
        match &event.reply {
            Reply::Number(_) => incrs.push(Incr {
                delta,
                acked: true,
                event,
            }),
            Reply::NotFound => report.push_at(
                Kind::Counters,
                key,
                Some(event.complete_us),
                format!("{event}: the counter was set before any incr and never deleted"),
            ),
            _ => incrs.push(Incr {
                delta,
                acked: false,
                event,
            }),
        }
    }
    let mut replies: BTreeMap<u64, &Event> = BTreeMap::new();
    for incr in incrs.iter().filter(|i| i.acked) {
        let Reply::Number(n) = incr.event.reply else {
            unreachable!("an acknowledged incr has a number")
        };
        let surely_before: u64 = incrs
            .iter()
            .filter(|o| o.acked && o.event.complete_us < incr.event.invoke_us)
            .map(|o| o.delta)
            .sum();
        let maybe_before: u64 = incrs
            .iter()
            .filter(|o| {
                o.event.invoke_us < incr.event.complete_us && !std::ptr::eq(o.event, incr.event)
            })
            .map(|o| o.delta)
            .sum();
        let lo = initial + surely_before + incr.delta;
        let hi = initial + maybe_before + incr.delta;
        if n < lo || n > hi {
            report.push_at(
                Kind::Counters,
                key,
                Some(incr.event.complete_us),
                format!(
                    "{}: no order of the increments gives {n} (between {lo} and {hi})",
                    incr.event
                ),
            );
        }
        if let Some(other) = replies.insert(n, incr.event) {
            report.push_at(
                Kind::Counters,
                key,
                Some(incr.event.complete_us.max(other.complete_us)),
                format!(
                    "two increments both answered {n}: {other} and {}",
                    incr.event
                ),
            );
        }
    }
    let acked: u64 = incrs.iter().filter(|i| i.acked).map(|i| i.delta).sum();
    let unknown: u64 = incrs.iter().filter(|i| !i.acked).map(|i| i.delta).sum();
    let (lo, hi) = (initial + acked, initial + acked + unknown);
    let mut judged: BTreeSet<Option<&str>> = BTreeSet::new();
    for (node, read) in finals {
        let Ok(seen) = read else { continue };
        if !judged.insert(seen.as_deref()) {
            continue;
        }
        match seen.as_deref().map(str::parse::<u64>) {
            Some(Ok(n)) if (lo..=hi).contains(&n) => {}
            _ => report.push(
                Kind::Counters,
                key,
                format!(
                    "node {node} ends with {seen:?}, not between {lo} (initial {initial} + acked) \
                     and {hi} (+ unknown)"
                ),
            ),
        }
    }
}

/// Divergence: every node answers alike at the end, and each answers.
fn check_agreement(key: &str, finals: &[(u32, FinalRead)], report: &mut Report) {
    let Some((_, first)) = finals.first() else {
        return;
    };
    if finals.iter().any(|(_, r)| r != first || r.is_err()) {
        let answers: Vec<String> = finals
            .iter()
            .map(|(n, r)| format!("node {n}: {r:?}"))
            .collect();
        report.push(Kind::Divergent, key, answers.join(", "));
    }
}

/// One configuration everywhere: every node answered with the same epoch.
fn check_epochs(epochs: &[(u32, Result<u64, String>)], report: &mut Report) {
    let Some((_, first)) = epochs.first() else {
        return;
    };
    if epochs.iter().any(|(_, e)| e != first || e.is_err()) {
        let answers: Vec<String> = epochs
            .iter()
            .map(|(n, e)| format!("node {n}: {e:?}"))
            .collect();
        report.push(Kind::Configs, "", answers.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str, op: Op, reply: Reply, (invoke_us, complete_us): (Micros, Micros)) -> Event {
        Event {
            client: 1,
            node: 1,
            key: key.to_string(),
            op,
            reply,
            invoke_us,
            complete_us,
        }
    }

    fn set(key: &str, value: &str, reply: Reply, at: (Micros, Micros)) -> Event {
        let op = Op::Set {
            value: value.to_string(),
        };
        event(key, op, reply, at)
    }

    fn read(key: &str, seen: Option<&str>, at: (Micros, Micros)) -> Event {
        let reply = match seen {
            Some(v) => Reply::Value {
                value: v.to_string(),
                cas: None,
            },
            None => Reply::Miss,
        };
        event(key, Op::Read, reply, at)
    }

    fn incr(key: &str, delta: u64, reply: Reply, at: (Micros, Micros)) -> Event {
        event(key, Op::Incr { delta }, reply, at)
    }

    fn finals(key: &str, answers: &[Option<&str>]) -> (String, Vec<(u32, FinalRead)>) {
        let reads = answers
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u32 + 1, Ok(a.map(str::to_string))))
            .collect();
        (key.to_string(), reads)
    }

    fn observed(events: Vec<Event>, ends: &[(&str, &[Option<&str>])]) -> Observed {
        Observed {
            events,
            finals: ends.iter().map(|(k, a)| finals(k, a)).collect(),
            ..Observed::default()
        }
    }

    fn only(report: &Report, kind: Kind) {
        assert!(
            report.count(kind) > 0,
            "no {kind:?} found:\n{}",
            report.sample(5)
        );
        let others: Vec<&Anomaly> = report.anomalies.iter().filter(|a| a.kind != kind).collect();
        assert!(others.is_empty(), "also found {others:?}");
    }

    #[test]
    fn a_clean_history_passes() {
        let mut o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                read("k", Some("a"), (30, 40)),
                event(
                    "k",
                    Op::Cas {
                        value: "b".into(),
                        cas: 7,
                    },
                    Reply::Stored,
                    (50, 60),
                ),
                read("k", Some("b"), (70, 80)),
                event("k", Op::Delete, Reply::Deleted, (90, 100)),
                read("k", None, (110, 120)),
                set("k", "c", Reply::Stored, (130, 140)),
                incr("n", 2, Reply::Number(2), (10, 20)),
                incr("n", 3, Reply::Number(5), (30, 40)),
            ],
            &[
                ("k", &[Some("c"), Some("c"), Some("c")]),
                ("n", &[Some("5"); 3]),
            ],
        );
        o.counters.insert("n".into(), 0);
        o.copies = Some((4, 4));
        o.epochs = vec![(1, Ok(5)), (2, Ok(5)), (3, Ok(5))];
        let report = check(&o);
        assert!(report.is_clean(), "{}", report.sample(10));
    }

    #[test]
    fn a_concurrent_or_unknown_write_may_be_read_or_not() {
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                // Concurrent with both reads below.
                set("k", "b", Reply::Stored, (30, 100)),
                read("k", Some("a"), (40, 50)),
                read("k", Some("b"), (40, 50)),
                // Unknown: may land at any time, or never.
                set("k", "c", Reply::Unknown("SERVER_ERROR".into()), (200, 300)),
                read("k", Some("b"), (400, 410)),
                read("k", Some("c"), (500, 510)),
                read("k", Some("b"), (600, 610)),
            ],
            &[("k", &[Some("b"); 3])],
        );
        let report = check(&o);
        assert!(report.is_clean(), "{}", report.sample(10));
    }

    #[test]
    fn a_read_older_than_a_write_acked_before_it_is_stale() {
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                set("k", "b", Reply::Stored, (30, 40)),
                read("k", Some("a"), (50, 60)),
            ],
            &[("k", &[Some("b"); 3])],
        );
        only(&check(&o), Kind::Stale);
    }

    #[test]
    fn a_miss_after_an_acked_set_is_stale_and_a_value_never_written_too() {
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                read("k", None, (30, 40)),
                read("k", Some("zz"), (50, 60)),
                // Not yet invoked when this read completed.
                read("k", Some("late"), (70, 80)),
                set("k", "late", Reply::Stored, (90, 100)),
            ],
            &[("k", &[Some("late"); 3])],
        );
        let report = check(&o);
        only(&report, Kind::Stale);
        assert_eq!(report.count(Kind::Stale), 3, "{}", report.sample(5));
    }

    #[test]
    fn an_acked_set_missing_at_the_end_is_lost() {
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                set("k", "b", Reply::Stored, (30, 40)),
            ],
            &[("k", &[Some("a"); 3]), ("j", &[None; 3])],
        );
        only(&check(&o), Kind::Lost);
        let o = observed(
            vec![set("k", "a", Reply::Stored, (10, 20))],
            &[("k", &[None; 3])],
        );
        only(&check(&o), Kind::Lost);
    }

    #[test]
    fn a_refused_cas_is_no_write_and_an_acked_cas_can_be_lost() {
        let cas = |value: &str, reply, at: (Micros, Micros)| {
            event(
                "k",
                Op::Cas {
                    value: value.into(),
                    cas: 1,
                },
                reply,
                at,
            )
        };
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                cas("x", Reply::Exists, (30, 40)),
                read("k", Some("x"), (50, 60)),
            ],
            &[("k", &[Some("a"); 3])],
        );
        only(&check(&o), Kind::Stale);
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                cas("b", Reply::Stored, (30, 40)),
            ],
            &[("k", &[Some("a"); 3])],
        );
        only(&check(&o), Kind::Lost);
    }

    #[test]
    fn a_value_back_after_an_acked_delete_is_resurrected() {
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                event("k", Op::Delete, Reply::Deleted, (30, 40)),
            ],
            &[("k", &[Some("a"); 3])],
        );
        only(&check(&o), Kind::Resurrected);
        // During the run, it is a stale read.
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                event("k", Op::Delete, Reply::Deleted, (30, 40)),
                read("k", Some("a"), (50, 60)),
            ],
            &[("k", &[None; 3])],
        );
        only(&check(&o), Kind::Stale);
        // A delete of unknown outcome may or may not have removed it.
        let o = observed(
            vec![
                set("k", "a", Reply::Stored, (10, 20)),
                event("k", Op::Delete, Reply::Unknown("timeout".into()), (30, 40)),
            ],
            &[("k", &[Some("a"); 3])],
        );
        assert!(check(&o).is_clean());
    }

    #[test]
    fn a_counter_outside_acked_and_unknown_increments_is_caught() {
        let history = |final_value: &str| {
            let mut o = observed(
                vec![
                    incr("n", 1, Reply::Number(11), (10, 20)),
                    incr("n", 2, Reply::Unknown("SERVER_ERROR".into()), (30, 40)),
                    incr("n", 4, Reply::Number(17), (50, 60)),
                ],
                &[("n", &[Some(final_value); 3])],
            );
            o.counters.insert("n".into(), 10);
            check(&o)
        };
        assert!(history("15").is_clean(), "{}", history("15").sample(5));
        assert!(history("17").is_clean(), "{}", history("17").sample(5));
        only(&history("14"), Kind::Counters);
        only(&history("18"), Kind::Counters);
    }

    #[test]
    fn an_incr_reply_no_order_explains_is_caught() {
        let history = |replies: [u64; 3]| {
            let mut o = observed(
                vec![
                    incr("n", 1, Reply::Number(replies[0]), (10, 20)),
                    // Concurrent with each other.
                    incr("n", 1, Reply::Number(replies[1]), (30, 60)),
                    incr("n", 1, Reply::Number(replies[2]), (40, 70)),
                ],
                &[("n", &[Some("3"); 3])],
            );
            o.counters.insert("n".into(), 0);
            check(&o)
        };
        assert!(history([1, 2, 3]).is_clean());
        assert!(history([1, 3, 2]).is_clean());
        // Too small: the first was acknowledged before either began.
        only(&history([1, 1, 3]), Kind::Counters);
        // Alike.
        only(&history([1, 3, 3]), Kind::Counters);
        // Too big for three increments of one.
        only(&history([1, 2, 4]), Kind::Counters);
        // A counter that went missing.
        let mut o = observed(
            vec![incr("n", 1, Reply::NotFound, (10, 20))],
            &[("n", &[Some("0"); 3])],
        );
        o.counters.insert("n".into(), 0);
        only(&check(&o), Kind::Counters);
    }

    #[test]
    fn nodes_that_answer_differently_diverge() {
        let o = observed(
            vec![set("k", "a", Reply::Unknown("timeout".into()), (10, 20))],
            &[("k", &[Some("a"), None, Some("a")])],
        );
        only(&check(&o), Kind::Divergent);
        let mut o = observed(vec![], &[("k", &[None, None])]);
        o.finals
            .get_mut("k")
            .unwrap()
            .push((3, Err("SERVER_ERROR".into())));
        only(&check(&o), Kind::Divergent);
    }

    #[test]
    fn copies_and_epochs_are_compared() {
        let mut o = Observed {
            copies: Some((400, 398)),
            ..Observed::default()
        };
        only(&check(&o), Kind::Copies);
        o.copies = Some((400, 400));
        o.epochs = vec![(1, Ok(7)), (2, Ok(6)), (3, Ok(7))];
        only(&check(&o), Kind::Configs);
        o.epochs = vec![(1, Ok(7)), (2, Err("no reply".into())), (3, Ok(7))];
        only(&check(&o), Kind::Configs);
    }
}
