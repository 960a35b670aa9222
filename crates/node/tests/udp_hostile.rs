//! A live cluster over real UDP sockets on loopback keeps committing while
//! it is sent garbage, datagrams of another cluster and of a stale epoch,
//! and datagrams from strangers; each is dropped and counted, and no node
//! panics. The "attacker" binds the address of a fourth member that never
//! runs (so its datagrams pass the source check and reach the decoder);
//! the other three form a quorum of four. The same member also floods the
//! control plane with garbage and with vote requests for ever higher
//! epochs: a leader heard by a quorum is not deposed.

mod common;

use rzab_node::cluster::{ClusterFile, TransportSection};
use rzab_node::runner::{Local, RunError, drain, run_intervals};
use rzab_node::{Distribution, RunConfig};
use rzab_transport::udp::UdpEndpoint;
use rzab_wire::{ControlBody, Encoder, Header, Kind, Zxid};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

fn cluster(port: u16) -> (ClusterFile, RunConfig) {
    let mut cfg = RunConfig {
        nodes: 4,
        duration_s: 3.0,
        interval_s: 3.0,
        ..RunConfig::default()
    };
    cfg.workload.keys = 1000;
    cfg.workload.write_ratio = 0.5;
    cfg.workload.sessions = 4;
    cfg.workload.trace_len = 10_000;
    cfg.workload.distribution = Distribution::Uniform;
    cfg.proto.mtu = 1472;
    // The claim under test is that a leader heard by a quorum is not
    // deposed. With four members the leader must hear both other nodes
    // within the election timeout; on a loaded 2-core CI machine a 25 ms
    // scheduling stall happens (CI saw one), and then a vote request with a
    // longer history is rightly granted. 250 ms keeps the claim about the
    // protocol, not about the scheduler.
    cfg.proto.heartbeat_ms = 10.0;
    cfg.proto.election_timeout_ms = 250.0;
    let addrs: Vec<SocketAddr> = (0..4)
        .map(|i| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, i + 1), port)))
        .collect();
    let transport = TransportSection {
        multicast_group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 99, 3), port + 500),
        ..TransportSection::default()
    };
    let file = ClusterFile::from_run(&cfg, &addrs, transport);
    file.validate().unwrap();
    (file, cfg)
}

/// A vote request from `sender` for `epoch`, claiming a long history.
fn vote_request(epoch: u32, sender: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let h = Header {
        kind: Kind::VoteRequest,
        cluster_id: cfg_cluster(),
        epoch,
        sender,
        lane: rzab_wire::CONTROL_LANE,
        count: 0,
        seq: 0,
    };
    let body = ControlBody::VoteRequest {
        current_epoch: epoch - 1,
        applied: Zxid::new(epoch - 1, 1 << 30),
    };
    let n = Encoder::control(&mut buf, h, &body).unwrap().finish();
    buf.truncate(n);
    buf
}

fn datagram(cluster_id: u32, epoch: u32, sender: u8) -> Vec<u8> {
    common::write_datagram(cluster_id, epoch, sender)
}

#[test]
fn hostile_datagrams_are_dropped_and_counted_while_the_cluster_commits() {
    let port = 23_000 + (std::process::id() % 1000) as u16 * 8;
    let (file, cfg) = cluster(port);
    let mut local = Local::start(
        &cfg,
        &[0, 1, 2],
        None,
        |n, l| UdpEndpoint::new(&file.udp(n, l)).map_err(|e| RunError::Setup(e.to_string())),
        |n| UdpEndpoint::new(&file.control_udp(n)).map_err(|e| RunError::Setup(e.to_string())),
    )
    .expect("three nodes start");
    // The absent fourth member's address, and a stranger's.
    let member = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, 4), port)).unwrap();
    // The absent member's control address (the port after the lanes).
    let member_ctl = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::new(127, 0, 3, 4), port + 1)).unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let attack = std::thread::spawn(move || {
        // Every running node is a target: whichever leads (an election may
        // move the lead on a loaded machine) gets the stale-epoch datagrams.
        let targets = [1u8, 2, 3].map(|i| SocketAddr::from(([127, 0, 3, i], port)));
        let end = Instant::now() + Duration::from_secs(2);
        let mut sent = 0u64;
        while Instant::now() < end && sent < 20_000 {
            for to in targets {
                let _ = member.send_to(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3], to); // garbage
                let _ = member.send_to(&datagram(0xBAD, 1, 3), to); // another cluster
                let _ = member.send_to(&datagram(cfg_cluster(), 0, 3), to); // stale epoch
                let _ = member.send_to(&datagram(cfg_cluster(), 1, 0), to); // claims to be the leader
                let _ = stranger.send_to(&datagram(cfg_cluster(), 1, 1), to); // not a member at all
                sent += 5;
            }
            for to in [
                SocketAddr::from(([127, 0, 3, 1], port + 1)),
                SocketAddr::from(([127, 0, 3, 2], port + 1)),
            ] {
                let _ = member_ctl.send_to(&[0xde, 0xad, 1, 2, 3], to); // control garbage
                let epoch = 2 + (sent / 10) as u32;
                let _ = member_ctl.send_to(&vote_request(epoch, 3), to); // tries to depose the leader
                sent += 2;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    });
    let mut out = Vec::new();
    let (_, secs) = run_intervals(&cfg, &mut local.monitor, &mut out);
    let sent = attack.join().unwrap();
    let running = local.node_snapshots();
    let drained = drain(&cfg, Some(&local.control), &local.monitor);
    let outcomes = local.finish(running, secs);
    assert!(drained.is_ok(), "{drained:?}\n{}", String::from_utf8_lossy(&out));
    assert!(sent > 1000);
    let total = |f: &dyn Fn(&rzab_node::report::NodeOutcome) -> u64| outcomes.iter().map(f).sum::<u64>();
    assert!(
        total(&|o| o.fin.runtime.writes_completed) > 1000,
        "the cluster kept committing"
    );
    assert!(total(&|o| o.fin.runtime.decode_errors) > 0, "garbage counted");
    assert!(
        total(&|o| o.fin.proto.rejected_cluster) > 0,
        "foreign cluster counted"
    );
    assert!(total(&|o| o.fin.proto.rejected_epoch) > 0, "stale epoch counted");
    assert!(
        total(&|o| o.fin.proto.rejected_sender + o.fin.proto.rejected_kind) > 0,
        "impostor counted"
    );
    assert!(
        total(&|o| o.fin.transport.dropped_unknown_source) > 0,
        "stranger counted"
    );
    assert!(total(&|o| o.control.decode_errors) > 0, "control garbage counted");
    assert!(
        total(&|o| o.control.stats.votes_denied) > 0,
        "vote requests were answered, and denied"
    );
    for o in &outcomes {
        assert_eq!(
            (o.control.epoch, o.control.leader),
            (1, Some(0)),
            "node {} kept its leader",
            o.id
        );
    }
    assert!(
        outcomes.iter().all(|o| o.errors.is_empty()),
        "{:?}",
        outcomes.iter().map(|o| &o.errors).collect::<Vec<_>>()
    );
    let d: Vec<u64> = outcomes.iter().map(|o| o.digest).collect();
    assert!(d.windows(2).all(|w| w[0] == w[1]), "digests {d:x?}");
}

fn cfg_cluster() -> u32 {
    RunConfig::default().cluster_id
}
