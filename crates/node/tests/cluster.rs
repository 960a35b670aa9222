//! Whole in-process clusters under bounded load: every replica applies the
//! same write sequence, sessions see their own writes and never read
//! backwards, and every issued write completes.

use rzab_node::{Distribution, RunConfig, run_inproc};
use rzab_proto::BroadcastMode;

const OPS_PER_LANE: u64 = 20_000;

fn bounded(nodes: u8, lanes: u8) -> RunConfig {
    let mut c = RunConfig {
        nodes,
        lanes,
        duration_s: 120.0,
        interval_s: 120.0,
        drain_timeout_s: 60.0,
        ..RunConfig::default()
    };
    let w = &mut c.workload;
    w.keys = 2_000;
    w.write_ratio = 0.3;
    w.sessions = 8;
    w.distribution = Distribution::Zipf { exponent: 0.99 };
    w.trace_len = 50_000;
    w.verify = true;
    w.ops_per_lane = Some(OPS_PER_LANE);
    c
}

fn run_and_check(cfg: &RunConfig) {
    let mut out = Vec::new();
    let r = run_inproc(cfg, &mut out).expect("the run starts");
    let log = String::from_utf8_lossy(&out);
    assert!(r.ok(), "problems: {:?}\n{log}\n{}", r.problems, r.summary());
    let lanes = cfg.nodes as u64 * cfg.lanes as u64;
    let issued: u64 = r
        .nodes
        .iter()
        .map(|n| n.runtime.reads + n.runtime.writes_issued)
        .sum();
    assert_eq!(
        issued,
        lanes * OPS_PER_LANE,
        "every lane issued exactly its operations"
    );
    let c = &r.cluster;
    assert!(
        c.writes_issued > 0 && c.writes_completed == c.writes_issued,
        "{c:?}"
    );
    assert!(c.digests_match && c.histories_match);
    assert_eq!(c.violations.total(), 0, "{:?}", c.violations);
    for n in &r.nodes {
        assert_eq!(n.applied, c.writes_completed, "node {} applied every write", n.id);
    }
}

#[test]
fn three_nodes_two_lanes_multicast() {
    run_and_check(&bounded(3, 2));
}

#[test]
fn five_nodes_unicast_with_tiny_messages_and_credits() {
    let mut c = bounded(5, 2);
    c.proto.broadcast = BroadcastMode::Unicast;
    c.proto.mtu = 256;
    c.proto.prepare_credits = 1;
    c.proto.commit_credits = 1;
    c.proto.write_credits = 1;
    run_and_check(&c);
}

#[test]
fn overflowing_queues_drop_datagrams_and_the_protocol_repairs_them() {
    let mut c = bounded(3, 1);
    // Queues of 2 datagrams overflow constantly; loss is repaired by
    // gap reports and retransmission timeouts.
    c.queue_depth = 2;
    c.proto.prepare_credits = 8;
    c.proto.retransmit_timeout_us = 2_000;
    let mut out = Vec::new();
    let r = run_inproc(&c, &mut out).expect("the run starts");
    assert!(r.ok(), "problems: {:?}\n{}", r.problems, r.summary());
    let dropped: u64 = r.nodes.iter().map(|n| n.transport.dropped_full).sum();
    assert!(dropped > 0, "the test must actually drop datagrams");
    assert_eq!(r.cluster.writes_completed, r.cluster.writes_issued);
}

#[test]
fn a_single_node_cluster_commits_alone() {
    run_and_check(&bounded(1, 2));
}
