//! Unit tests of the consensus core, one behaviour each, driven through `Node::step`
//! with hand-built messages or a lossless in-memory network. Pure.

use std::collections::{BTreeMap, VecDeque};

use super::*;

/// The value the tests agree on; `Conf` for short.
type Conf = TestConfiguration;

fn conf(acceptors: &[NodeId], tag: u64) -> Conf {
    Conf {
        acceptors: acceptors.to_vec(),
        learners: vec![4],
        tag,
    }
}

fn genesis() -> Conf {
    conf(&[1, 2, 3], 0)
}

fn node(id: NodeId) -> Node<Conf> {
    let mut n = Node::new(id, 0, genesis(), id);
    n.step(0, Input::Tick);
    n
}

fn b(round: u64, node: NodeId) -> Ballot {
    Ballot { round, node }
}

fn msg(from: NodeId, to: NodeId, decided_epoch: Epoch, body: Body<Conf>) -> Input<Conf> {
    Input::Message(Message {
        from,
        to,
        decided_epoch,
        body,
    })
}

fn bodies(out: &Output<Conf>) -> Vec<(NodeId, Body<Conf>)> {
    out.messages
        .iter()
        .map(|m| (m.to, m.body.clone()))
        .collect()
}

fn cluster() -> BTreeMap<NodeId, Node<Conf>> {
    (1..=4).map(|id| (id, node(id))).collect()
}

/// Deliver every message, in order, until the network is quiet. Returns decisions.
fn run(
    nodes: &mut BTreeMap<NodeId, Node<Conf>>,
    now: u64,
    first: Output<Conf>,
) -> Vec<(NodeId, Epoch, Conf)> {
    let mut queue: VecDeque<Message<Conf>> = first.messages.into_iter().collect();
    let mut decided = Vec::new();
    for _ in 0..10_000 {
        let Some(m) = queue.pop_front() else {
            return decided;
        };
        let to = m.to;
        let Some(n) = nodes.get_mut(&to) else {
            continue;
        };
        let out = n.step(now, Input::Message(m));
        decided.extend(out.decided.into_iter().map(|(e, v)| (to, e, v)));
        queue.extend(out.messages);
    }
    panic!("network never went quiet");
}

#[test]
fn a_new_node_persists_its_initial_state_first() {
    let mut n = Node::new(1, 0, genesis(), 1);
    let out = n.step(0, Input::Tick);
    assert_eq!(out.persist.as_ref().map(|d| d.node_id), Some(1));
    assert_eq!(out.timer_at, HEARTBEAT_TICKS);
    let out = n.step(1, Input::Tick);
    assert!(out.persist.is_none(), "nothing changed, nothing to persist");
}

#[test]
fn a_prepare_is_promised_and_persisted_before_the_promise_is_sent() {
    let mut n = node(2);
    let out = n.step(
        1,
        msg(
            1,
            2,
            0,
            Body::Prepare {
                ballot: b(1, 1),
                epoch: 1,
            },
        ),
    );
    assert_eq!(out.persist.as_ref().unwrap().promised, b(1, 1));
    assert_eq!(
        bodies(&out),
        vec![(
            1,
            Body::Promise {
                ballot: b(1, 1),
                epoch: 1,
                accepted: None
            }
        )]
    );
}

#[test]
fn a_stale_ballot_is_ignored() {
    let mut n = node(2);
    n.step(
        1,
        msg(
            3,
            2,
            0,
            Body::Prepare {
                ballot: b(5, 3),
                epoch: 1,
            },
        ),
    );
    let out = n.step(
        2,
        msg(
            1,
            2,
            0,
            Body::Prepare {
                ballot: b(4, 1),
                epoch: 1,
            },
        ),
    );
    assert!(out.persist.is_none());
    assert_eq!(
        bodies(&out),
        vec![(
            1,
            Body::Nack {
                ballot: b(4, 1),
                promised: b(5, 3)
            }
        )]
    );
    let out = n.step(
        3,
        msg(
            1,
            2,
            0,
            Body::Accept {
                ballot: b(4, 1),
                epoch: 1,
                value: conf(&[1, 2, 3], 9),
            },
        ),
    );
    assert!(out.persist.is_none());
    assert!(n.durable().accepted.is_none());
}

#[test]
fn an_accept_is_persisted_and_acknowledged() {
    let mut n = node(2);
    let value = conf(&[1, 2, 3], 7);
    let out = n.step(
        1,
        msg(
            1,
            2,
            0,
            Body::Accept {
                ballot: b(1, 1),
                epoch: 1,
                value: value.clone(),
            },
        ),
    );
    let persisted = out.persist.clone().unwrap();
    assert_eq!(
        persisted.accepted,
        Some(Accepted {
            ballot: b(1, 1),
            epoch: 1,
            value
        })
    );
    assert_eq!(
        bodies(&out),
        vec![(
            1,
            Body::Accepted {
                ballot: b(1, 1),
                epoch: 1
            }
        )]
    );
    // A duplicate is acknowledged again but needs no new write.
    let out = n.step(
        2,
        msg(
            1,
            2,
            0,
            Body::Accept {
                ballot: b(1, 1),
                epoch: 1,
                value: conf(&[1, 2, 3], 7),
            },
        ),
    );
    assert!(out.persist.is_none());
    assert_eq!(out.messages.len(), 1);
}

#[test]
fn a_promise_reports_the_value_accepted_in_the_open_epoch() {
    let mut n = node(2);
    let value = conf(&[1, 2, 3], 7);
    n.step(
        1,
        msg(
            1,
            2,
            0,
            Body::Accept {
                ballot: b(1, 1),
                epoch: 1,
                value: value.clone(),
            },
        ),
    );
    let out = n.step(
        2,
        msg(
            3,
            2,
            0,
            Body::Prepare {
                ballot: b(2, 3),
                epoch: 1,
            },
        ),
    );
    assert_eq!(
        bodies(&out),
        vec![(
            3,
            Body::Promise {
                ballot: b(2, 3),
                epoch: 1,
                accepted: Some((b(1, 1), value))
            }
        )]
    );
}

#[test]
fn a_proposal_for_an_old_epoch_is_refused() {
    let mut nodes = cluster();
    let out = nodes.get_mut(&1).unwrap().step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    run(&mut nodes, 1, out);
    let n = nodes.get_mut(&2).unwrap();
    assert_eq!(n.decided_epoch(), 1);
    let out = n.step(
        2,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 2),
        },
    );
    assert_eq!(
        out.proposal,
        Some(ProposeResult::StaleEpoch { decided_epoch: 1 })
    );
    assert!(out.messages.is_empty());
}

#[test]
fn a_proposal_for_a_future_epoch_is_refused_by_a_node_that_is_behind() {
    let mut n = node(1);
    let out = n.step(
        1,
        Input::Propose {
            epoch: 3,
            value: conf(&[1, 2, 3], 1),
        },
    );
    assert_eq!(
        out.proposal,
        Some(ProposeResult::NodeBehind { decided_epoch: 0 })
    );
}

#[test]
fn a_second_proposal_while_one_is_pending_is_busy() {
    let mut n = node(1);
    let out = n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    assert_eq!(out.proposal, Some(ProposeResult::Proposing));
    let out = n.step(
        2,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 2),
        },
    );
    assert_eq!(out.proposal, Some(ProposeResult::Busy { epoch: 1 }));
}

#[test]
fn an_invalid_configuration_is_refused() {
    let mut n = node(1);
    let out = n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 1, 2], 1),
        },
    );
    assert_eq!(out.proposal, Some(ProposeResult::InvalidConfiguration));
    let out = n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3, 4, 5, 6, 7, 8], 1),
        },
    );
    assert_eq!(out.proposal, Some(ProposeResult::InvalidConfiguration));
}

#[test]
fn a_proposal_starts_phase_one_under_a_persisted_ballot() {
    let mut n = node(1);
    let out = n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    assert_eq!(out.persist.unwrap().round_used, 1);
    let to: Vec<NodeId> = out.messages.iter().map(|m| m.to).collect();
    assert_eq!(to, vec![1, 2, 3]);
    assert!(out.messages.iter().all(|m| m.body
        == Body::Prepare {
            ballot: b(1, 1),
            epoch: 1
        }));
    let (at, prepares) = next_prepares(&mut n, out.timer_at);
    assert!((1 + RETRY_TICKS..1 + RETRY_TICKS + RETRY_JITTER_TICKS).contains(&at));
    assert!(prepares.iter().all(|p| *p
        == Body::Prepare {
            ballot: b(2, 1),
            epoch: 1
        }));
}

/// Tick at each deadline until the node sends prepares; returns when and what.
fn next_prepares(n: &mut Node<Conf>, mut at: u64) -> (u64, Vec<Body<Conf>>) {
    for _ in 0..100 {
        let out = n.step(at, Input::Tick);
        let prepares: Vec<_> = out
            .messages
            .into_iter()
            .map(|m| m.body)
            .filter(|b| matches!(b, Body::Prepare { .. }))
            .collect();
        if !prepares.is_empty() {
            return (at, prepares);
        }
        at = out.timer_at;
    }
    panic!("no retry");
}

#[test]
fn a_quorum_of_promises_makes_a_leader_that_sends_accepts() {
    let mut n = node(1);
    let value = conf(&[1, 2, 3], 1);
    n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: value.clone(),
        },
    );
    let out = n.step(
        2,
        msg(
            2,
            1,
            0,
            Body::Promise {
                ballot: b(1, 1),
                epoch: 1,
                accepted: None,
            },
        ),
    );
    assert!(out.messages.is_empty() && !n.is_leader());
    // A duplicate promise does not count twice; a learner's does not count at all.
    n.step(
        2,
        msg(
            2,
            1,
            0,
            Body::Promise {
                ballot: b(1, 1),
                epoch: 1,
                accepted: None,
            },
        ),
    );
    n.step(
        2,
        msg(
            4,
            1,
            0,
            Body::Promise {
                ballot: b(1, 1),
                epoch: 1,
                accepted: None,
            },
        ),
    );
    assert!(!n.is_leader());
    let out = n.step(
        3,
        msg(
            3,
            1,
            0,
            Body::Promise {
                ballot: b(1, 1),
                epoch: 1,
                accepted: None,
            },
        ),
    );
    assert!(n.is_leader());
    assert_eq!(out.messages.len(), 3);
    assert!(out.messages.iter().all(|m| m.body
        == Body::Accept {
            ballot: b(1, 1),
            epoch: 1,
            value: value.clone()
        }));
}

#[test]
fn a_new_leader_proposes_the_highest_accepted_value_not_its_own() {
    let mut n = node(1);
    n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    n.step(2, Input::Tick);
    let out = n.step(100, Input::Tick); // retry: a higher ballot
    let ballot = match &out
        .messages
        .iter()
        .find(|m| matches!(m.body, Body::Prepare { .. }))
        .unwrap()
        .body
    {
        Body::Prepare { ballot, .. } => *ballot,
        _ => unreachable!(),
    };
    let old = conf(&[1, 2, 3], 50);
    let older = conf(&[1, 2, 3], 40);
    n.step(
        101,
        msg(
            2,
            1,
            0,
            Body::Promise {
                ballot,
                epoch: 1,
                accepted: Some((b(1, 3), older)),
            },
        ),
    );
    let out = n.step(
        102,
        msg(
            3,
            1,
            0,
            Body::Promise {
                ballot,
                epoch: 1,
                accepted: Some((b(1, 2), old.clone())),
            },
        ),
    );
    // b(1, 3) > b(1, 2): the value accepted under the highest ballot wins.
    assert!(out
        .messages
        .iter()
        .all(|m| matches!(&m.body, Body::Accept { value, .. } if value.tag == 40)));
    assert_eq!(out.messages.len(), 3);
    assert!(!out
        .messages
        .iter()
        .any(|m| matches!(&m.body, Body::Accept { value, .. } if *value == old)));
}

#[test]
fn a_quorum_of_accepts_decides_and_tells_every_member() {
    let mut nodes = cluster();
    let value = conf(&[1, 2, 3], 1);
    let out = nodes.get_mut(&1).unwrap().step(
        1,
        Input::Propose {
            epoch: 1,
            value: value.clone(),
        },
    );
    let decided = run(&mut nodes, 1, out);
    for id in 1..=4 {
        assert!(
            decided.contains(&(id, 1, value.clone())),
            "node {id} learned epoch 1"
        );
        assert_eq!(nodes[&id].decided_epoch(), 1);
    }
}

#[test]
fn a_stable_leader_skips_phase_one_for_the_next_epoch() {
    let mut nodes = cluster();
    let out = nodes.get_mut(&1).unwrap().step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    run(&mut nodes, 1, out);
    assert!(nodes[&1].is_leader());
    let out = nodes.get_mut(&1).unwrap().step(
        2,
        Input::Propose {
            epoch: 2,
            value: conf(&[1, 2, 3], 2),
        },
    );
    assert!(out.persist.is_none(), "no new ballot");
    assert!(out
        .messages
        .iter()
        .all(|m| matches!(m.body, Body::Accept { epoch: 2, .. })));
    run(&mut nodes, 2, out);
    assert!(nodes.values().all(|n| n.decided_epoch() == 2));
}

#[test]
fn a_leader_whose_quorum_left_the_acceptors_runs_phase_one_again() {
    let mut nodes = cluster();
    let moved = Conf {
        acceptors: vec![4, 5, 6],
        learners: vec![1, 2, 3],
        tag: 1,
    };
    for id in [5, 6] {
        let mut n = Node::new(id, 0, genesis(), id);
        n.step(0, Input::Tick);
        nodes.insert(id, n);
    }
    let out = nodes.get_mut(&1).unwrap().step(
        1,
        Input::Propose {
            epoch: 1,
            value: moved.clone(),
        },
    );
    run(&mut nodes, 1, out);
    assert!(
        !nodes[&1].is_leader(),
        "its promises came from the old acceptors"
    );
    let out = nodes.get_mut(&1).unwrap().step(
        2,
        Input::Propose {
            epoch: 2,
            value: moved,
        },
    );
    let to: Vec<NodeId> = out.messages.iter().map(|m| m.to).collect();
    assert_eq!(to, vec![4, 5, 6]);
    assert!(out
        .messages
        .iter()
        .all(|m| matches!(m.body, Body::Prepare { epoch: 2, .. })));
    run(&mut nodes, 2, out);
    assert!(nodes.values().all(|n| n.decided_epoch() == 2));
}

#[test]
fn a_message_with_a_higher_decided_epoch_triggers_catch_up() {
    let mut n = node(4);
    let out = n.step(1, msg(1, 4, 3, Body::Heartbeat));
    assert_eq!(bodies(&out), vec![(1, Body::CatchUp { from_epoch: 1 })]);
    // Rate limited: not again within CATCHUP_RETRY_TICKS.
    let out = n.step(2, msg(2, 4, 3, Body::Heartbeat));
    assert!(out.messages.is_empty());
    let out = n.step(1 + CATCHUP_RETRY_TICKS, msg(2, 4, 3, Body::Heartbeat));
    assert_eq!(out.messages.len(), 1);
}

#[test]
fn a_catch_up_reply_fills_the_missing_epochs() {
    let mut n = node(4);
    let values: Vec<(Epoch, Conf)> = (1..=3).map(|e| (e, conf(&[1, 2, 3], e))).collect();
    let out = n.step(
        1,
        msg(
            1,
            4,
            3,
            Body::CatchUpReply {
                values: values.clone(),
            },
        ),
    );
    assert_eq!(out.decided, values);
    assert_eq!(n.decided_epoch(), 3);
    assert!(out.persist.is_some());
    // Replayed, it teaches nothing new.
    let out = n.step(2, msg(1, 4, 3, Body::CatchUpReply { values }));
    assert!(out.decided.is_empty());
}

#[test]
fn a_lagging_node_is_sent_what_it_missed_when_it_heartbeats() {
    let mut n = node(1);
    n.step(
        1,
        msg(
            2,
            1,
            0,
            Body::CatchUpReply {
                values: vec![(1, conf(&[1, 2, 3], 1))],
            },
        ),
    );
    let out = n.step(2, msg(4, 1, 0, Body::Heartbeat));
    assert_eq!(
        bodies(&out),
        vec![(
            4,
            Body::CatchUpReply {
                values: vec![(1, conf(&[1, 2, 3], 1))]
            }
        )]
    );
}

#[test]
fn an_accept_for_a_closed_epoch_gets_the_decided_value_back() {
    let mut n = node(2);
    n.step(
        1,
        msg(
            1,
            2,
            1,
            Body::Decided {
                epoch: 1,
                value: conf(&[1, 2, 3], 1),
            },
        ),
    );
    let out = n.step(
        2,
        msg(
            3,
            2,
            0,
            Body::Accept {
                ballot: b(9, 3),
                epoch: 1,
                value: conf(&[1, 2, 3], 2),
            },
        ),
    );
    assert!(out.persist.is_none());
    assert_eq!(
        bodies(&out),
        vec![(
            3,
            Body::CatchUpReply {
                values: vec![(1, conf(&[1, 2, 3], 1))]
            }
        )]
    );
}

#[test]
fn an_accept_beyond_the_open_epoch_is_not_accepted() {
    let mut n = node(2);
    let out = n.step(
        1,
        msg(
            1,
            2,
            4,
            Body::Accept {
                ballot: b(1, 1),
                epoch: 5,
                value: conf(&[1, 2, 3], 1),
            },
        ),
    );
    assert!(n.durable().accepted.is_none());
    assert_eq!(bodies(&out), vec![(1, Body::CatchUp { from_epoch: 1 })]);
}

#[test]
fn a_nack_makes_the_proposer_back_off_and_outbid() {
    let mut n = node(1);
    n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    let out = n.step(
        2,
        msg(
            2,
            1,
            0,
            Body::Nack {
                ballot: b(1, 1),
                promised: b(7, 3),
            },
        ),
    );
    assert!(out.messages.is_empty());
    let (at, prepares) = next_prepares(&mut n, out.timer_at);
    assert!(at >= 2 + RETRY_TICKS);
    assert_eq!(prepares.len(), 3);
    assert!(prepares.iter().all(|p| *p
        == Body::Prepare {
            ballot: b(8, 1),
            epoch: 1
        }));
}

#[test]
fn a_restarted_node_keeps_its_promise() {
    let mut n = node(2);
    let out = n.step(
        1,
        msg(
            3,
            2,
            0,
            Body::Prepare {
                ballot: b(5, 3),
                epoch: 1,
            },
        ),
    );
    let mut n = Node::restore(out.persist.unwrap(), 99);
    let out = n.step(
        2,
        msg(
            1,
            2,
            0,
            Body::Accept {
                ballot: b(4, 1),
                epoch: 1,
                value: conf(&[1, 2, 3], 1),
            },
        ),
    );
    assert_eq!(
        bodies(&out),
        vec![(
            1,
            Body::Nack {
                ballot: b(4, 1),
                promised: b(5, 3)
            }
        )]
    );
}

#[test]
fn a_restarted_proposer_never_reuses_a_ballot() {
    let mut n = node(4); // a learner proposes: it promises nothing to itself
    let out = n.step(
        1,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 1),
        },
    );
    let mut n = Node::restore(out.persist.unwrap(), 5);
    let out = n.step(
        2,
        Input::Propose {
            epoch: 1,
            value: conf(&[1, 2, 3], 2),
        },
    );
    assert!(out.messages.iter().all(|m| m.body
        == Body::Prepare {
            ballot: b(2, 4),
            epoch: 1
        }));
}

#[test]
fn a_message_for_another_incarnation_is_dropped() {
    let mut n = node(2);
    let out = n.step(
        1,
        msg(
            1,
            77,
            5,
            Body::Prepare {
                ballot: b(1, 1),
                epoch: 1,
            },
        ),
    );
    assert!(out.messages.is_empty() && out.persist.is_none());
}

#[test]
fn the_decided_log_is_bounded() {
    let mut n = node(4);
    for e in 1..=(DECIDED_LOG_MAX as u64 + 5) {
        n.step(
            e,
            msg(
                1,
                4,
                e,
                Body::Decided {
                    epoch: e,
                    value: conf(&[1, 2, 3], e),
                },
            ),
        );
    }
    assert_eq!(n.durable().decided.len(), DECIDED_LOG_MAX);
    assert_eq!(n.decided_epoch(), DECIDED_LOG_MAX as u64 + 5);
}

#[test]
fn a_learner_far_behind_jumps_to_the_oldest_value_kept() {
    let mut n = node(4);
    let values: Vec<(Epoch, Conf)> = (40..43).map(|e| (e, conf(&[1, 2, 3], e))).collect();
    let out = n.step(
        1,
        msg(
            1,
            4,
            42,
            Body::CatchUpReply {
                values: values.clone(),
            },
        ),
    );
    assert_eq!(out.decided, values);
    assert_eq!(n.decided_epoch(), 42);
}

#[test]
#[should_panic(expected = "two values decided")]
fn two_values_decided_at_one_epoch_is_a_bug_caught_by_an_assert() {
    let mut n = node(4);
    n.step(
        1,
        msg(
            1,
            4,
            1,
            Body::Decided {
                epoch: 1,
                value: conf(&[1, 2, 3], 1),
            },
        ),
    );
    n.step(
        2,
        msg(
            2,
            4,
            1,
            Body::Decided {
                epoch: 1,
                value: conf(&[1, 2, 3], 2),
            },
        ),
    );
}
