//! The cluster configuration, its file, replica placement and the client-port
//! encoders, checked as a user of the crate sees them (pure: no sockets).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use ringcache::cluster::config::{
    parse_cluster_file, parse_cluster_file_with_epoch, ClusterConfig, ClusterFileError,
    ClusterSpec, ConfigError, Endpoint, NodeConfig, NodeState, WriteAck,
};
use ringcache::cluster::discovery::{encode_config_get_cluster, encode_stats_cluster};
use ringcache::cluster::placement::Placement;
use ringcache::consensus::{self, Configuration, Input, Node};
use support::Rng;

const KEYS: usize = 100_000;

/// The example in `src/cluster/config.rs`'s docs, taken from the source so the
/// documentation cannot drift from what is tested.
fn documented_example() -> String {
    let source = include_str!("../src/cluster/config.rs");
    let mut lines = source
        .lines()
        .skip_while(|l| l.trim() != "//! ```toml")
        .skip(1);
    let example: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.trim() != "//! ```")
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.strip_prefix("//!").unwrap_or(l))
        })
        .collect();
    assert!(example.len() > 10, "the example was not found in the docs");
    example.join("\n") + "\n"
}

fn endpoint(text: &str) -> Endpoint {
    Endpoint::parse(text).unwrap()
}

/// `nodes` nodes with ids 1.., `shards` shard endpoints each, all up.
fn spec(nodes: u32, shards: u32, replicas: usize) -> ClusterSpec {
    ClusterSpec {
        nodes: (1..=nodes)
            .map(|id| NodeConfig {
                id,
                client_addr: endpoint(&format!("10.0.0.{id}:11211")),
                shards: (0..shards)
                    .map(|s| endpoint(&format!("10.0.0.{id}:{}", 11300 + s)))
                    .collect(),
                state: NodeState::Up,
            })
            .collect(),
        replicas,
        vnodes_per_shard: 160,
        write_ack: WriteAck::Quorum,
        acceptors: vec![1],
        next_node_id: 0,
    }
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

#[test]
fn the_documented_example_parses_into_three_nodes_of_two_shards_at_epoch_1() {
    let config = ClusterConfig::from_file_text(&documented_example()).unwrap();
    assert_eq!(config.epoch(), 1);
    assert_eq!(config.replicas(), 2);
    assert_eq!(config.vnodes_per_shard(), 160);
    assert_eq!(config.write_ack(), WriteAck::Quorum);
    assert_eq!(config.acceptors(), &[1, 2, 3]);
    let ids: Vec<u32> = config.nodes().iter().map(|n| n.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let node2 = config.node(2).unwrap();
    assert_eq!(node2.client_addr, endpoint("10.0.0.2:11211"));
    assert_eq!(
        node2.shards,
        [endpoint("10.0.0.2:11300"), endpoint("10.0.0.2:11301")]
    );
    assert_eq!(node2.state, NodeState::Up);
}

#[test]
fn defaults_fill_what_the_file_leaves_out_and_arrays_may_span_lines() {
    let text = "replicas = 1\nacceptors = [\n  7,  # the only node\n]\n\n[[node]]\nid = 7\naddr = \"cache.local:11211\"\nshards = [\n  \"cache.local:11300\",\n]\nstate = \"joining\"\n";
    let err = ClusterConfig::from_file_text(text).unwrap_err();
    assert_eq!(
        err,
        ClusterFileError::Invalid(ConfigError::ReplicasAboveNodes {
            replicas: 1,
            ring_nodes: 0
        }),
        "a lone joining node cannot hold the keys"
    );
    let config = ClusterConfig::from_file_text(&text.replace("joining", "up")).unwrap();
    assert_eq!(config.vnodes_per_shard(), 160);
    assert_eq!(config.write_ack(), WriteAck::Quorum);
    assert_eq!(config.acceptors(), &[7]);
    assert_eq!(
        config.node(7).unwrap().shards,
        [endpoint("cache.local:11300")]
    );
}

#[test]
fn every_syntax_error_names_its_line() {
    let example = documented_example();
    let cases: &[(&str, &str, usize, &str)] = &[
        // (text to replace, replacement, line named, words in the reason)
        ("replicas = 2 ", "replicas = two ", 2, "invalid"),
        ("replicas = 2 ", "replicas 2 ", 2, "expected `=`"),
        (
            "write_ack = \"quorum\"",
            "write_ack = \"most\"",
            4,
            "unknown variant `most`",
        ),
        (
            "acceptors = [1, 2, 3]",
            "acceptors = [1, 2, 3",
            7, // where the array's missing `]` is found
            "expected `,`",
        ),
        (
            "acceptors = [1, 2, 3]",
            "acceptors = 3",
            5,
            "expected a sequence",
        ),
        (
            "acceptors = [1, 2, 3]",
            "acceptors = [1, \"b\", 3]",
            5,
            "expected u32",
        ),
        (
            "[[node]]\nid = 1",
            "[nodes]\nid = 1",
            7,
            "unknown field `nodes`",
        ),
        ("id = 1 ", "id = 4294967296 ", 8, "expected u32"),
        (
            "addr = \"10.0.0.1:11211\"",
            "addr = \"10.0.0.1\"",
            9,
            "host:port",
        ),
        (
            "addr = \"10.0.0.1:11211\"",
            "addr = \"10.0.0.1:70000\"",
            9,
            "port",
        ),
        (
            "addr = \"10.0.0.1:11211\"",
            "addr = \"10.0.0.1:11211",
            9,
            "invalid basic string",
        ),
        ("\"10.0.0.1:11301\"]", "\"10.0.0.1:0\"]", 10, "port 0"),
        (
            "state = \"up\"",
            "state = \"sleeping\"",
            11,
            "unknown variant `sleeping`",
        ),
        (
            "state = \"up\"",
            "state = \"up\"\nreplicas = 3",
            12,
            "unknown field `replicas`",
        ),
        ("id = 1 ", "id = 1\nid = 1 ", 9, "duplicate key"),
        (
            "replicas = 2 ",
            "epoch = 0\nreplicas = 2 ",
            2,
            "expected a nonzero u64",
        ),
        (
            "replicas = 2 ",
            "epoch = 3\nepoch = 3\nreplicas = 2 ",
            3,
            "duplicate key",
        ),
        (
            "replicas = 2 ",
            "epoch = \"3\"\nreplicas = 2 ",
            2,
            "invalid type: string",
        ),
        (
            "replicas = 2 ",
            "colour = 2\nreplicas = 2 ",
            2,
            "unknown field `colour`",
        ),
        ("id = 2\n", "", 13, "missing field `id`"),
        (
            "addr = \"10.0.0.3:11211\"\n",
            "",
            18,
            "missing field `addr`",
        ),
    ];
    for &(from, to, line, words) in cases {
        assert!(example.contains(from), "the example lacks {from:?}");
        let text = example.replacen(from, to, 1);
        match ClusterConfig::from_file_text(&text) {
            Err(ClusterFileError::Syntax { line: l, reason }) => {
                assert_eq!(l, line, "{from:?} -> {to:?}: {reason}");
                assert!(reason.contains(words), "{from:?} -> {to:?}: {reason}");
                let shown = ClusterFileError::Syntax { line: l, reason }.to_string();
                assert!(shown.starts_with(&format!("line {line}: ")), "{shown}");
            }
            other => panic!("{from:?} -> {to:?}: {other:?}"),
        }
    }
    let missing = ClusterConfig::from_file_text("acceptors = [1]\n").unwrap_err();
    assert!(
        missing.to_string().contains("missing field `replicas`"),
        "{missing}"
    );
}

#[test]
fn every_invalid_configuration_is_refused_with_its_reason() {
    type Edit = fn(&mut ClusterSpec);
    let cases: &[(Edit, ConfigError)] = &[
        (|s| s.nodes.clear(), ConfigError::NoNodes),
        (
            |s| *s = spec(65, 1, 1),
            ConfigError::TooManyNodes { count: 65 },
        ),
        (
            |s| s.nodes[1].id = 1,
            ConfigError::DuplicateNodeId { id: 1 },
        ),
        (
            |s| s.nodes[2].shards.clear(),
            ConfigError::NoShards { node: 3 },
        ),
        (
            |s| {
                s.nodes[0].shards = (0..257)
                    .map(|p| endpoint(&format!("h:{}", 1000 + p)))
                    .collect()
            },
            ConfigError::TooManyShards {
                node: 1,
                count: 257,
            },
        ),
        (
            |s| s.nodes[1].shards[0] = endpoint("10.0.0.1:11300"),
            ConfigError::DuplicateEndpoint {
                endpoint: "10.0.0.1:11300".into(),
            },
        ),
        (
            // Two endpoints with one ketama name ("::1:2") would share ring points.
            |s| {
                s.nodes[0].shards[0] = endpoint("[::1:2]:11211");
                s.nodes[1].shards[0] = endpoint("[::1]:2");
            },
            ConfigError::DuplicateEndpoint {
                endpoint: "[::1]:2".into(),
            },
        ),
        (
            |s| s.nodes[1].client_addr = endpoint("10.0.0.1:11211"),
            ConfigError::DuplicateEndpoint {
                endpoint: "10.0.0.1:11211".into(),
            },
        ),
        (
            |s| s.nodes[1].client_addr = endpoint("10.0.0.1:11301"),
            ConfigError::DuplicateEndpoint {
                endpoint: "10.0.0.1:11301".into(),
            },
        ),
        (|s| s.replicas = 0, ConfigError::ReplicasZero),
        (
            |s| s.replicas = 4,
            ConfigError::ReplicasAboveNodes {
                replicas: 4,
                ring_nodes: 3,
            },
        ),
        (
            |s| {
                *s = spec(6, 1, 6);
            },
            ConfigError::ReplicasAboveMax { replicas: 6 },
        ),
        (
            |s| {
                s.replicas = 3;
                s.nodes[0].state = NodeState::Joining;
            },
            ConfigError::ReplicasAboveNodes {
                replicas: 3,
                ring_nodes: 2,
            },
        ),
        (
            |s| s.vnodes_per_shard = 0,
            ConfigError::VnodesInvalid {
                vnodes_per_shard: 0,
            },
        ),
        (
            |s| s.vnodes_per_shard = 162,
            ConfigError::VnodesInvalid {
                vnodes_per_shard: 162,
            },
        ),
        (
            |s| s.vnodes_per_shard = 8192,
            ConfigError::VnodesInvalid {
                vnodes_per_shard: 8192,
            },
        ),
        (
            |s| s.acceptors = vec![1, 2],
            ConfigError::AcceptorCount { count: 2 },
        ),
        (
            |s| s.acceptors = vec![1, 9, 2],
            ConfigError::UnknownAcceptor { id: 9 },
        ),
        (
            |s| s.acceptors = vec![1, 2, 1],
            ConfigError::DuplicateAcceptor { id: 1 },
        ),
    ];
    for (i, (edit, expected)) in cases.iter().enumerate() {
        let mut s = spec(3, 2, 2);
        edit(&mut s);
        let err = ClusterConfig::new(1, s).unwrap_err();
        assert_eq!(&err, expected, "case {i}");
        assert!(!err.to_string().is_empty());
    }
    let seven = ClusterSpec {
        acceptors: (1..=7).collect(),
        ..spec(7, 1, 1)
    };
    assert_eq!(
        ClusterConfig::new(1, seven).unwrap_err(),
        ConfigError::AcceptorCount { count: 7 }
    );
    // One node with one shard may serve it on its client port.
    let mut single = spec(1, 1, 1);
    single.nodes[0].shards[0] = single.nodes[0].client_addr.clone();
    assert!(ClusterConfig::new(1, single).is_ok());
}

#[test]
fn any_toml_spelling_of_the_file_reads_as_the_same_configuration() {
    let text = r#"
        "replicas" = 0x2
        write_ack = 'quorum'
        acceptors = [ 1, 2,
                      3 ]
        node = [
            { id = 1, addr = "10.0.0.1:11211", shards = ['10.0.0.1:11300', "10.0.0.1:11301"] },
            { id = 2, addr = "10.0.0.2:11211", shards = ["10.0.0.2:11300", "10.0.0.2:11301"], state = "up" },
            { id = 3, addr = """10.0.0.3:11211""", shards = ["10.0.0.3:11300", "10.0.0.3:11301"] },
        ]
    "#;
    assert_eq!(
        ClusterConfig::from_file_text(text).unwrap(),
        ClusterConfig::from_file_text(&documented_example()).unwrap()
    );
}

#[test]
fn a_file_without_acceptors_is_a_cluster_no_node_runs_paxos_in() {
    let example = documented_example();
    let text = example.replacen("acceptors = [1, 2, 3]", "", 1);
    let config = ClusterConfig::from_file_text(&text).unwrap();
    assert!(config.acceptors().is_empty());
    assert_eq!(config.learners(), &[1, 2, 3]);
    assert_eq!(
        ClusterConfig::from_file_text(&config.to_file_text()).unwrap(),
        config
    );
    // Paxos cannot run over it: a node with --data-dir refuses it, and a
    // successor (which Paxos decides) must name acceptors.
    assert_eq!(config.require_acceptors(), Err(ConfigError::NoAcceptors));
    assert_eq!(
        config.successor(config.to_spec()).unwrap_err(),
        ConfigError::NoAcceptors
    );
    let with = ClusterConfig::from_file_text(&example).unwrap();
    assert_eq!(with.require_acceptors(), Ok(()));
    let mut without = with.to_spec();
    without.acceptors.clear();
    assert_eq!(
        with.successor(without).unwrap_err(),
        ConfigError::NoAcceptors
    );
}

#[test]
fn a_file_may_set_its_epoch_and_is_epoch_1_without_one() {
    let example = documented_example();
    assert!(!example.contains("epoch ="), "the example sets no epoch");
    assert_eq!(ClusterConfig::from_file_text(&example).unwrap().epoch(), 1);
    let at_9 = ClusterConfig::from_file_text(&format!("epoch = 9\n{example}")).unwrap();
    assert_eq!(at_9.epoch(), 9);
    let at_max = format!("epoch = {}\n{example}", u64::MAX);
    assert_eq!(
        ClusterConfig::from_file_text(&at_max).unwrap().epoch(),
        u64::MAX
    );
    // The epoch is a top-level key: after a [[node]] it is a node key, and unknown.
    let in_node = example.replacen("state = \"up\"", "epoch = 2", 1);
    match ClusterConfig::from_file_text(&in_node) {
        Err(ClusterFileError::Syntax { reason, .. }) => {
            assert!(reason.contains("unknown field `epoch`"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let (epoch, spec) = parse_cluster_file_with_epoch(&format!("epoch = 4\n{example}")).unwrap();
    assert_eq!(epoch, 4);
    assert_eq!(parse_cluster_file(&example).unwrap(), spec);
}

#[test]
fn epochs_start_at_one_and_only_grow() {
    assert_eq!(
        ClusterConfig::new(0, spec(3, 2, 2)).unwrap_err(),
        ConfigError::EpochZero
    );
    let first = ClusterConfig::from_file_text(&documented_example()).unwrap();
    assert_eq!(first.epoch(), 1);
    let mut next_spec = first.to_spec();
    next_spec.write_ack = WriteAck::All;
    let second = first.successor(next_spec).unwrap();
    assert_eq!(second.epoch(), 2);
    assert!(second.supersedes(&first));
    assert!(!first.supersedes(&second));
    assert!(!first.supersedes(&first));
    assert_eq!(second.to_spec().nodes, first.to_spec().nodes);
    // An invalid successor leaves the current configuration in force.
    let mut bad = second.to_spec();
    bad.replicas = 0;
    assert_eq!(
        second.successor(bad).unwrap_err(),
        ConfigError::ReplicasZero
    );
}

#[test]
fn a_configuration_is_shared_across_threads_by_arc() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<ClusterConfig>();
    shareable::<Placement>();
    let config = Arc::new(ClusterConfig::new(1, spec(3, 2, 2)).unwrap());
    let placement = Placement::new(Arc::clone(&config));
    assert!(Arc::ptr_eq(placement.config(), &config));
    let other = std::thread::spawn(move || placement.owners(b"k"))
        .join()
        .unwrap();
    assert_eq!(other, Placement::new(config).owners(b"k"));
}

#[test]
fn every_key_has_r_owners_on_distinct_nodes_and_the_primary_is_the_ring_owner() {
    for (nodes, shards, replicas) in [(1, 4, 1), (3, 2, 2), (3, 2, 3), (5, 3, 3), (5, 1, 5)] {
        let placement = Placement::new(Arc::new(
            ClusterConfig::new(1, spec(nodes, shards, replicas)).unwrap(),
        ));
        for i in 0..10_000 {
            let k = key(i);
            let owners = placement.owners(k.as_bytes());
            assert_eq!(owners.len(), replicas);
            assert_eq!(owners.primary(), placement.ring().owner(k.as_bytes()));
            let distinct: HashSet<u32> = owners.iter().map(|o| o.node).collect();
            assert_eq!(distinct.len(), replicas, "{k}: {owners:?}");
            for o in owners.iter() {
                assert!(o.shard < shards);
            }
        }
    }
}

#[test]
fn with_3_nodes_of_2_shards_and_2_replicas_each_node_holds_two_thirds_of_the_keys() {
    let placement = Placement::new(Arc::new(ClusterConfig::new(1, spec(3, 2, 2)).unwrap()));
    let mut held = [0usize; 3];
    let mut primaries = [0usize; 3];
    let mut per_shard = [[0usize; 2]; 3];
    for i in 0..KEYS {
        let owners = placement.owners(key(i).as_bytes());
        assert_ne!(owners[0].node, owners[1].node);
        primaries[owners[0].node as usize - 1] += 1;
        for o in owners.iter() {
            held[o.node as usize - 1] += 1;
            per_shard[o.node as usize - 1][o.shard as usize] += 1;
        }
    }
    eprintln!("keys held per node (of {KEYS}): {held:?}; as primary: {primaries:?}; per shard: {per_shard:?}");
    let expected = KEYS as f64 * 2.0 / 3.0;
    for count in held {
        let off = (count as f64 - expected).abs() / expected;
        assert!(
            off <= 0.10,
            "a node holds {count} keys, {:.1}% from 2/3: {held:?}",
            off * 100.0
        );
    }
}

#[test]
fn removing_a_node_moves_only_keys_it_owned() {
    let before = ClusterConfig::new(1, spec(3, 2, 2)).unwrap();
    let mut next = before.to_spec();
    next.nodes.retain(|n| n.id != 3);
    let after = before.successor(next).unwrap();
    assert_eq!(after.epoch(), 2);
    let before = Placement::new(Arc::new(before));
    let after = Placement::new(Arc::new(after));
    let mut moved = 0;
    for i in 0..KEYS {
        let k = key(i);
        let old = before.owners(k.as_bytes());
        let new = after.owners(k.as_bytes());
        if old.iter().any(|o| o.node == 3) {
            moved += 1;
            // The surviving owner keeps its copy, on the same shard.
            for o in old.iter().filter(|o| o.node != 3) {
                assert!(new.contains(o), "{k}: {old:?} -> {new:?}");
            }
        } else {
            assert_eq!(old, new, "{k} moved though node 3 did not own it");
        }
    }
    eprintln!("removing node 3 of 3: {moved} of {KEYS} keys changed owners");
    assert!(moved > KEYS / 2 && moved < KEYS * 3 / 4, "{moved}");
}

#[test]
fn config_get_cluster_counts_its_data_bytes_exactly() {
    let mut s = spec(2, 2, 1);
    s.nodes[1].shards[1] = endpoint("cache-2.example:11301");
    let config = ClusterConfig::new(7, s).unwrap();
    let mut out = Vec::new();
    encode_config_get_cluster(&config, &mut out);
    let data = "7\n10.0.0.1|10.0.0.1|11300 10.0.0.1|10.0.0.1|11301 10.0.0.2|10.0.0.2|11300 cache-2.example||11301\n";
    let expected = format!("CONFIG cluster 0 {}\r\n{data}\r\nEND\r\n", data.len());
    assert_eq!(String::from_utf8(out.clone()).unwrap(), expected);
    assert_eq!(data.len(), 97);

    // Read back as a client does: the header's count covers exactly the data block.
    let text = String::from_utf8(out).unwrap();
    let (header, rest) = text.split_once("\r\n").unwrap();
    let count: usize = header.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(&rest[count..], "\r\nEND\r\n");
}

#[test]
fn config_get_cluster_lists_down_nodes_but_not_joining_ones() {
    let mut s = spec(3, 1, 1);
    s.nodes[1].state = NodeState::Down;
    s.nodes[2].state = NodeState::Joining;
    let mut out = Vec::new();
    encode_config_get_cluster(&ClusterConfig::new(3, s).unwrap(), &mut out);
    assert_eq!(
        out,
        b"CONFIG cluster 0 50\r\n3\n10.0.0.1|10.0.0.1|11300 10.0.0.2|10.0.0.2|11300\n\r\nEND\r\n"
    );
}

#[test]
fn stats_cluster_names_the_epoch_settings_and_every_node() {
    let mut s = spec(2, 2, 2);
    s.nodes[1].state = NodeState::Down;
    let mut out = Vec::new();
    encode_stats_cluster(&ClusterConfig::new(4, s).unwrap(), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "STAT epoch 4\r\n\
         STAT replicas 2\r\n\
         STAT write_ack quorum\r\n\
         STAT write_acks_needed 2\r\n\
         STAT vnodes_per_shard 160\r\n\
         STAT nodes 2\r\n\
         STAT acceptors 1\r\n\
         STAT node:1:state up\r\n\
         STAT node:1:addr 10.0.0.1:11211\r\n\
         STAT node:1:shards 2\r\n\
         STAT node:1:shard:0 10.0.0.1:11300\r\n\
         STAT node:1:shard:1 10.0.0.1:11301\r\n\
         STAT node:2:state down\r\n\
         STAT node:2:addr 10.0.0.2:11211\r\n\
         STAT node:2:shards 2\r\n\
         STAT node:2:shard:0 10.0.0.2:11300\r\n\
         STAT node:2:shard:1 10.0.0.2:11301\r\n\
         END\r\n"
    );
}

/// A valid configuration drawn from `seed`: 1 to 8 nodes with ids anywhere in
/// u32, 1 to 4 shards each on IPv4, IPv6 or named hosts, every node state, every
/// write_ack, 1, 3 or 5 acceptors in any order, any epoch from 1 to u64::MAX.
fn random_config(seed: u64) -> ClusterConfig {
    const HOSTS: &[&str] = &[
        "10.0.0.1",
        "127.0.0.1",
        "::1",
        "fe80::1",
        "2001:db8::7",
        "cache-1.local",
        "node_2.example.com",
        "h",
    ];
    const STATES: &[NodeState] = &[NodeState::Up, NodeState::Down, NodeState::Joining];
    const ACKS: &[WriteAck] = &[WriteAck::One, WriteAck::Quorum, WriteAck::All];
    let mut rng = Rng::new(seed);
    let count = 1 + rng.below(8) as usize;
    let mut ids: Vec<u32> = Vec::new();
    while ids.len() < count {
        let id = match rng.below(3) {
            0 => rng.below(10) as u32,
            1 => u32::MAX - rng.below(3) as u32,
            _ => rng.next_u64() as u32,
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // Distinct ports keep every endpoint (and ketama name) distinct.
    let mut port = 1 + rng.below(1000) as u16;
    let mut next_endpoint = |rng: &mut Rng| {
        port += 1 + rng.below(50) as u16;
        Endpoint {
            host: rng.pick(HOSTS).to_string(),
            port,
        }
    };
    let mut nodes: Vec<NodeConfig> = ids
        .iter()
        .map(|&id| NodeConfig {
            id,
            client_addr: next_endpoint(&mut rng),
            shards: (0..1 + rng.below(4))
                .map(|_| next_endpoint(&mut rng))
                .collect(),
            state: *rng.pick(STATES),
        })
        .collect();
    if !nodes.iter().any(|n| n.state.is_on_ring()) {
        nodes[0].state = NodeState::Up;
    }
    let ring_nodes = nodes.iter().filter(|n| n.state.is_on_ring()).count();
    let replicas = 1 + rng.below(ring_nodes.min(5) as u64) as usize;
    let acceptor_count = [1, 3, 5].into_iter().filter(|&a| a <= count).max().unwrap();
    let mut acceptors = ids.clone();
    for i in (1..acceptors.len()).rev() {
        acceptors.swap(i, rng.below(i as u64 + 1) as usize);
    }
    acceptors.truncate(1 + rng.below(acceptor_count as u64 / 2 + 1) as usize * 2);
    let epoch = match rng.below(3) {
        0 => 1,
        1 => u64::MAX - rng.below(2),
        _ => 1 + rng.below(1 << 40),
    };
    let spec = ClusterSpec {
        nodes,
        replicas,
        vnodes_per_shard: 4 * (1 + rng.below(1024) as usize),
        write_ack: *rng.pick(ACKS),
        acceptors,
        next_node_id: 0,
    };
    ClusterConfig::new(epoch, spec.clone()).unwrap_or_else(|e| panic!("seed {seed}: {e}: {spec:?}"))
}

#[test]
fn every_configuration_reads_back_from_its_own_file_text() {
    let mut seen = (HashSet::new(), HashSet::new(), HashSet::new(), false);
    for seed in 0..500 {
        let config = random_config(seed);
        let text = config.to_file_text();
        let read = ClusterConfig::from_file_text(&text)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{text}"));
        assert_eq!(read, config, "seed {seed}\n{text}");
        assert_eq!(read.to_file_text(), text, "seed {seed}");
        for node in config.nodes() {
            seen.0.insert(node.state.as_str());
            seen.3 |= node.shards.iter().any(|s| s.host.contains(':'));
        }
        seen.1.insert(config.write_ack().as_str());
        seen.2.insert(config.acceptors().len());
    }
    // The generator covered what the format must carry.
    assert_eq!(seen.0.len(), 3, "states: {:?}", seen.0);
    assert_eq!(seen.1.len(), 3, "write_acks: {:?}", seen.1);
    assert_eq!(seen.2.len(), 3, "acceptor counts: {:?}", seen.2);
    assert!(seen.3, "no IPv6 endpoint was drawn");
}

#[test]
fn the_documented_example_is_written_back_with_every_default_spelled_out() {
    let config = ClusterConfig::from_file_text(&documented_example()).unwrap();
    let mut spec = config.to_spec();
    spec.nodes[1].state = NodeState::Down;
    spec.nodes[2].client_addr = endpoint("[::1]:11211");
    spec.nodes[2].shards = vec![endpoint("[::1]:11300")];
    spec.write_ack = WriteAck::All;
    spec.acceptors = vec![3, 1, 2];
    let config = config.successor(spec).unwrap();
    assert_eq!(
        config.to_file_text(),
        "epoch = 2\n\
         replicas = 2\n\
         vnodes_per_shard = 160\n\
         write_ack = \"all\"\n\
         acceptors = [3, 1, 2]\n\
         next_node_id = 4\n\
         \n\
         [[node]]\n\
         id = 1\n\
         addr = \"10.0.0.1:11211\"\n\
         shards = [\"10.0.0.1:11300\", \"10.0.0.1:11301\"]\n\
         state = \"up\"\n\
         \n\
         [[node]]\n\
         id = 2\n\
         addr = \"10.0.0.2:11211\"\n\
         shards = [\"10.0.0.2:11300\", \"10.0.0.2:11301\"]\n\
         state = \"down\"\n\
         \n\
         [[node]]\n\
         id = 3\n\
         addr = \"[::1]:11211\"\n\
         shards = [\"[::1]:11300\"]\n\
         state = \"up\"\n"
    );
    assert_eq!(
        ClusterConfig::from_file_text(&config.to_file_text()).unwrap(),
        config
    );
}

#[test]
fn an_endpoint_that_would_not_read_back_is_refused() {
    type Edit = fn(&mut Endpoint);
    let cases: &[(Edit, &str)] = &[
        (|e| e.port = 0, "10.0.0.1:0"),
        (|e| e.host = "a:b".into(), "[a:b]:11300"),
        (|e| e.host = String::new(), ":11300"),
        (|e| e.host = "bad\"host".into(), "bad\"host:11300"),
        (|e| e.host = "two words".into(), "two words:11300"),
        (|e| e.host = "x".repeat(254), ""),
    ];
    for (i, (edit, shown)) in cases.iter().enumerate() {
        for in_shard in [false, true] {
            let mut s = spec(3, 2, 2);
            let target = if in_shard {
                &mut s.nodes[0].shards[0]
            } else {
                &mut s.nodes[0].client_addr
            };
            edit(target);
            match ClusterConfig::new(1, s) {
                Err(ConfigError::InvalidEndpoint { endpoint, reason }) => {
                    if in_shard && !shown.is_empty() {
                        assert_eq!(endpoint, *shown, "case {i}");
                    }
                    assert!(!reason.is_empty(), "case {i}");
                }
                other => panic!("case {i} (in shard: {in_shard}): {other:?}"),
            }
        }
    }
}

#[test]
fn a_configuration_too_long_to_write_as_a_file_is_refused() {
    // 64 nodes of 128 shards on 200-byte host names: about 1.7 MB of text.
    let host = |node: u32| format!("{node:03}{}", "h".repeat(197));
    let nodes = (1..=64)
        .map(|id| NodeConfig {
            id,
            client_addr: Endpoint {
                host: host(id),
                port: 1,
            },
            shards: (0..128)
                .map(|s| Endpoint {
                    host: host(id),
                    port: 2 + s,
                })
                .collect(),
            state: NodeState::Up,
        })
        .collect();
    let s = ClusterSpec {
        nodes,
        ..spec(1, 1, 1)
    };
    match ClusterConfig::new(1, s.clone()) {
        Err(ConfigError::FileTextTooLong { bytes }) => {
            assert!(bytes > ringcache::cluster::config::CLUSTER_FILE_LEN_MAX)
        }
        other => panic!("{other:?}"),
    }
    // Half the shards fit, and read back.
    let mut half = s;
    for node in &mut half.nodes {
        node.shards.truncate(32);
    }
    let config = ClusterConfig::new(1, half).unwrap();
    let text = config.to_file_text();
    assert!(text.len() > 400_000, "{}", text.len());
    assert_eq!(ClusterConfig::from_file_text(&text).unwrap(), config);
}

#[test]
fn acceptors_decide_and_every_other_member_learns() {
    let mut s = spec(5, 1, 2);
    s.nodes.reverse();
    s.nodes[0].state = NodeState::Joining;
    s.nodes[1].state = NodeState::Down;
    s.acceptors = vec![3, 1, 2];
    let config = ClusterConfig::new(1, s.clone()).unwrap();
    assert_eq!(Configuration::acceptors(&config), &[3, 1, 2]);
    assert_eq!(config.acceptors(), &[3, 1, 2], "the inherent method is u32");
    assert_eq!(config.learners(), &[4, 5], "learners are by id, any state");
    assert!(consensus::is_valid(&config));
    // The cached ids follow the configuration, so equality is unchanged.
    s.nodes.reverse();
    assert_eq!(ClusterConfig::new(1, s.clone()).unwrap(), config);
    s.acceptors = vec![1];
    let one = ClusterConfig::new(1, s).unwrap();
    assert_ne!(one, config);
    assert_eq!(Configuration::acceptors(&one), &[1]);
    assert_eq!(one.learners(), &[2, 3, 4, 5]);
    let big = ClusterConfig::new(
        1,
        ClusterSpec {
            acceptors: vec![64, 1, 2, 3, 33],
            ..spec(64, 1, 5)
        },
    )
    .unwrap();
    assert!(consensus::is_valid(&big));
    assert_eq!(big.learners().len(), 59);
    for seed in 0..200 {
        let config = random_config(seed);
        assert!(consensus::is_valid(&config), "seed {seed}");
        let mut members: Vec<u64> = Configuration::acceptors(&config)
            .iter()
            .chain(config.learners())
            .copied()
            .collect();
        members.sort_unstable();
        let ids: Vec<u64> = config.nodes().iter().map(|n| u64::from(n.id)).collect();
        assert_eq!(members, ids, "seed {seed}: each node is one or the other");
    }
}

#[test]
fn three_acceptors_decide_a_successor_configuration_and_the_learner_learns_it() {
    let first = ClusterConfig::new(
        1,
        ClusterSpec {
            acceptors: vec![1, 2, 3],
            ..spec(4, 2, 2)
        },
    )
    .unwrap();
    assert!(consensus::is_valid(&first));
    let mut nodes: Vec<Node<ClusterConfig>> = (1..=4)
        .map(|id| Node::new(id, first.epoch(), first.clone(), id))
        .collect();
    let mut next_spec = first.to_spec();
    next_spec.nodes[3].state = NodeState::Down;
    let second = first.successor(next_spec).unwrap();
    let out = nodes[0].step(
        1,
        Input::Propose {
            epoch: 2,
            value: second.clone(),
        },
    );
    let mut queue: std::collections::VecDeque<_> = out.messages.into();
    let mut steps = 0;
    while let Some(message) = queue.pop_front() {
        steps += 1;
        assert!(steps < 1000, "the network never went quiet");
        let to = usize::try_from(message.to).unwrap() - 1;
        queue.extend(nodes[to].step(2, Input::Message(message)).messages);
    }
    for node in &mut nodes {
        // Learners hear of the decision at the next heartbeat, or at once.
        let out = node.step(100, Input::Tick);
        queue.extend(out.messages);
    }
    while let Some(message) = queue.pop_front() {
        steps += 1;
        assert!(steps < 1000, "the network never went quiet");
        let to = usize::try_from(message.to).unwrap() - 1;
        queue.extend(nodes[to].step(101, Input::Message(message)).messages);
    }
    for node in &nodes {
        assert_eq!(node.decided_epoch(), 2, "node {}", node.id());
        assert_eq!(node.config(), &second, "node {}", node.id());
    }
}

#[test]
fn node_ids_are_never_handed_out_twice() {
    let three = ClusterConfig::new(1, spec(3, 1, 1)).unwrap();
    assert_eq!(three.next_node_id(), 4);
    // Removing the highest id does not free it.
    let mut spec2 = three.to_spec();
    spec2.nodes.retain(|n| n.id != 3);
    let two = three.successor(spec2).unwrap();
    assert_eq!(two.next_node_id(), 4);
    // Nor does a spec that asks for less, and the text carries the value.
    let mut spec3 = two.to_spec();
    spec3.next_node_id = 1;
    let again = two.successor(spec3).unwrap();
    assert_eq!(again.next_node_id(), 4);
    let read = ClusterConfig::from_file_text(&again.to_file_text()).unwrap();
    assert_eq!(read, again);
    assert!(again.to_file_text().contains("next_node_id = 4\n"));
    // A file that sets it too low is raised past its highest id.
    let low = ClusterConfig::from_file_text(
        &again
            .to_file_text()
            .replace("next_node_id = 4", "next_node_id = 2"),
    )
    .unwrap();
    assert_eq!(low.next_node_id(), 3);
}
