//! The control plane driven directly: a few nodes with fake hosts on an
//! in-memory network, time advanced by hand.

use super::*;
use crate::{OwnedItem, transfer::Received};
use rzab_wire::{Op, decode};

#[derive(Default)]
struct FakeHost {
    applied: Zxid,
    store: BTreeMap<u64, (Zxid, Vec<u8>)>,
    /// Entries the lanes hold unapplied.
    held: Vec<OwnedEntry>,
    /// Every applied entry (a history log that forgets nothing unless told).
    history: Vec<OwnedEntry>,
    forgot: bool,
    lanes: Option<LaneStart>,
    learners: Vec<NodeId>,
    promoted: Vec<NodeId>,
    serving: bool,
}

impl Host for FakeHost {
    fn applied(&self) -> Zxid {
        self.applied
    }
    fn pause_lanes(&mut self) -> Vec<OwnedEntry> {
        self.lanes = None;
        std::mem::take(&mut self.held)
    }
    fn history_after(&self, after: Zxid) -> Option<Vec<OwnedEntry>> {
        (!self.forgot).then(|| self.history.iter().filter(|e| e.zxid > after).cloned().collect())
    }
    fn snapshot(&mut self) -> Snapshot {
        let items = self
            .store
            .iter()
            .map(|(&key, (zxid, v))| OwnedItem {
                key,
                zxid: *zxid,
                value: v.clone(),
            })
            .collect();
        Snapshot {
            base: self.applied,
            items,
            sessions: vec![],
        }
    }
    fn apply(&mut self, entries: &[OwnedEntry]) {
        for e in entries {
            if e.zxid <= self.applied {
                continue;
            }
            self.store.insert(e.key, (e.zxid, e.value.clone()));
            self.history.push(e.clone());
            self.applied = e.zxid;
        }
    }
    fn advance_to(&mut self, to: Zxid) {
        self.applied = self.applied.max(to);
    }
    fn install(&mut self, s: Snapshot) {
        self.store = s.items.into_iter().map(|i| (i.key, (i.zxid, i.value))).collect();
        self.applied = s.base;
        self.history.clear();
    }
    fn start_lanes(&mut self, start: &LaneStart) {
        self.lanes = Some(start.clone());
        self.serving = start.serving;
        // The lanes of a new epoch begin at its base.
        if start.lids.is_none() && self.applied.epoch() < start.epoch {
            self.applied = Zxid::epoch_base(start.epoch);
        }
    }
    fn add_learner(&mut self, node: NodeId, _fence: bool) -> Option<(Vec<u64>, Zxid, Zxid)> {
        self.learners.push(node);
        Some((vec![0], self.applied, self.applied))
    }
    fn promote(&mut self, node: NodeId) -> bool {
        self.promoted.push(node);
        true
    }
    fn serve(&mut self) {
        self.serving = true;
    }
}

fn entry(epoch: u32, c: u32) -> OwnedEntry {
    OwnedEntry {
        zxid: Zxid::new(epoch, c),
        lane: 0,
        origin: 1,
        op: Op::Put,
        session: c,
        seq: 1,
        key: c as u64,
        value: vec![c as u8],
    }
}

struct Net {
    nodes: Vec<Option<(Control, FakeHost)>>,
    now: Time,
    /// Links cut: (from, to).
    cut: Vec<(NodeId, NodeId)>,
}

impl Net {
    fn new(n: u8) -> Net {
        let members = NodeSet::from_ids(0..n);
        let nodes = (0..n)
            .map(|i| {
                let mut cfg = ControlConfig::new(7, i, members);
                cfg.seed = 100 + i as u64;
                let host = FakeHost {
                    applied: Zxid::epoch_base(1),
                    lanes: Some(LaneStart {
                        epoch: 1,
                        leader: 0,
                        lids: None,
                        voters: members.without(0),
                        serving: true,
                    }),
                    ..FakeHost::default()
                };
                Some((Control::new(cfg, 0, Time::ZERO), host))
            })
            .collect();
        Net {
            nodes,
            now: Time::ZERO,
            cut: Vec::new(),
        }
    }

    fn crash(&mut self, n: NodeId) {
        self.nodes[n as usize] = None;
    }

    fn restart(&mut self, n: NodeId) {
        let members = NodeSet::from_ids(0..self.nodes.len() as u8);
        let mut cfg = ControlConfig::new(7, n, members);
        cfg.seed = 900 + n as u64;
        self.nodes[n as usize] = Some((Control::new_learner(cfg), FakeHost::default()));
    }

    fn ctl(&self, n: NodeId) -> &Control {
        &self.nodes[n as usize].as_ref().unwrap().0
    }

    fn host(&self, n: NodeId) -> &FakeHost {
        &self.nodes[n as usize].as_ref().unwrap().1
    }

    fn host_mut(&mut self, n: NodeId) -> &mut FakeHost {
        &mut self.nodes[n as usize].as_mut().unwrap().1
    }

    /// One millisecond: timers, then every datagram delivered (until quiet).
    fn step(&mut self) {
        self.now = self.now + Span::from_millis(1);
        let now = self.now;
        for (c, h) in self.nodes.iter_mut().flatten() {
            c.handle_timeout(now, h);
        }
        for _ in 0..10_000 {
            let mut out = Vec::new();
            for (i, slot) in self.nodes.iter_mut().enumerate() {
                let Some((c, _)) = slot else { continue };
                let mut buf = vec![0u8; 4096];
                while let Some(t) = c.poll_transmit(now, &mut buf) {
                    let to = match t.dest {
                        Dest::Node(n) => NodeSet::from_ids([n]),
                        Dest::Set(s) => s,
                        Dest::Group => unreachable!(),
                    };
                    out.push((i as NodeId, to, buf[..t.len].to_vec()));
                }
            }
            if out.is_empty() {
                return;
            }
            for (from, to, bytes) in out {
                for n in to.iter().filter(|&n| !self.cut.contains(&(from, n))) {
                    if let Some((c, h)) = self.nodes[n as usize].as_mut() {
                        c.handle(now, h, &decode(&bytes).unwrap());
                    }
                }
            }
        }
        panic!("messages never stopped");
    }

    fn run_until(&mut self, what: &str, ms: u64, mut done: impl FnMut(&Net) -> bool) {
        for _ in 0..ms {
            if done(self) {
                return;
            }
            self.step();
        }
        let states: Vec<_> = self
            .nodes
            .iter()
            .map(|n| n.as_ref().map(|(c, _)| (c.state_name(), c.epoch())))
            .collect();
        panic!("{what} did not happen within {ms} ms: {states:?}");
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .flatten()
            .find(|(c, _)| c.is_leader())
            .map(|(c, _)| c.cfg.node)
    }
}

#[test]
fn a_healthy_leader_keeps_its_followers() {
    let mut net = Net::new(3);
    for _ in 0..500 {
        net.step();
    }
    assert_eq!(net.leader(), Some(0));
    assert!(
        net.nodes
            .iter()
            .flatten()
            .all(|(c, _)| c.epoch() == 1 && c.serving())
    );
    assert_eq!(net.ctl(1).stats().elections_started, 0);
}

#[test]
fn a_dead_leader_is_replaced_and_the_union_of_held_entries_survives() {
    let mut net = Net::new(3);
    net.step();
    // Lane holes: node 1 holds 1:1..1:3, node 2 holds 1:1, 1:2 and 1:4.
    net.host_mut(1).held = vec![entry(1, 1), entry(1, 2), entry(1, 3)];
    net.host_mut(2).held = vec![entry(1, 1), entry(1, 2), entry(1, 4)];
    net.crash(0);
    net.run_until("a new leader", 300, |n| {
        n.leader().is_some() && n.nodes.iter().flatten().all(|(c, _)| c.serving())
    });
    let leader = net.leader().unwrap();
    assert!(leader == 1 || leader == 2);
    for n in [1, 2] {
        let h = net.host(n);
        let applied: Vec<u32> = h.history.iter().map(|e| e.zxid.counter()).collect();
        assert_eq!(
            applied,
            vec![1, 2, 3, 4],
            "node {n} applied the whole recovered history"
        );
        assert_eq!(net.ctl(n).epoch(), 2);
        let lanes = h.lanes.as_ref().unwrap();
        assert_eq!((lanes.epoch, lanes.leader), (2, leader));
        assert_eq!(
            h.applied,
            Zxid::epoch_base(2),
            "the new epoch's lanes start at its base"
        );
    }
    let won: Vec<_> = net
        .nodes
        .iter()
        .flatten()
        .flat_map(|(c, _)| c.leaderships.clone())
        .filter(|l| l.0 == 2)
        .collect();
    assert_eq!(won.len(), 1, "one leader of epoch 2: {won:?}");
}

#[test]
fn a_follower_behind_gets_the_history_it_missed_or_a_snapshot() {
    for forgot in [false, true] {
        let mut net = Net::new(3);
        net.step();
        // Node 1 applied up to 1:5, node 2 only to 1:2; node 1 forgot its
        // history (a snapshot must go) when `forgot`.
        let all: Vec<_> = (1..=5).map(|c| entry(1, c)).collect();
        net.host_mut(1).apply(&all);
        net.host_mut(1).forgot = forgot;
        net.host_mut(2).apply(&all[..2]);
        net.crash(0);
        net.run_until("node 1 leads epoch 2", 300, |n| {
            n.leader() == Some(1) && n.ctl(2).serving()
        });
        assert_eq!(net.host(2).store, net.host(1).store, "forgot={forgot}");
        let s = net.ctl(1).stats();
        assert_eq!(
            (s.snapshots_sent, s.diffs_sent),
            if forgot { (1, 0) } else { (0, 1) }
        );
    }
}

#[test]
fn a_voter_denies_a_candidate_that_is_behind() {
    let mut net = Net::new(3);
    net.step();
    let all: Vec<_> = (1..=3).map(|c| entry(1, c)).collect();
    net.host_mut(2).apply(&all);
    // Node 1 cannot reach node 2 but node 2 reaches everyone: only node 2
    // can win (node 1 is behind it).
    net.crash(0);
    net.run_until("node 2 leads", 500, |n| {
        n.leader() == Some(2) && n.ctl(1).serving()
    });
    assert_eq!(net.host(1).applied.epoch(), 2);
    assert_eq!(net.host(1).history.len(), 3, "node 1 got what it lacked");
}

#[test]
fn followers_that_hear_their_leader_refuse_to_depose_it() {
    let mut net = Net::new(3);
    // Node 2 cannot hear the leader, so it keeps calling elections; node 1
    // still hears it and denies them.
    net.cut.push((0, 2));
    for _ in 0..300 {
        net.step();
    }
    assert_eq!(net.leader(), Some(0));
    assert!(net.ctl(2).stats().elections_started > 0);
    assert_eq!(net.ctl(1).stats().votes_granted, 0);
}

#[test]
fn a_restarted_node_joins_as_a_learner_and_is_promoted() {
    let mut net = Net::new(3);
    net.step();
    let all: Vec<_> = (1..=4).map(|c| entry(1, c)).collect();
    for n in 0..3 {
        net.host_mut(n).apply(&all);
    }
    net.crash(2);
    net.restart(2);
    assert!(!net.ctl(2).serving());
    // The leader counts node 2's acks only once node 2 runs as a member of
    // the epoch (so that its votes would carry what it acked).
    for _ in 0..300 {
        net.step();
        if !net.host(0).promoted.is_empty() {
            assert!(
                net.ctl(2).serving() && net.ctl(2).epoch() == 1,
                "counted before it joined"
            );
            break;
        }
    }
    assert!(net.ctl(2).serving());
    assert_eq!(net.host(2).store, net.host(0).store);
    assert_eq!(net.host(0).learners, vec![2]);
    assert_eq!(net.host(0).promoted, vec![2]);
    let lanes = net.host(2).lanes.as_ref().unwrap();
    assert_eq!(
        (lanes.epoch, lanes.leader, lanes.lids.clone()),
        (1, 0, Some(vec![0]))
    );
    assert_eq!(
        net.ctl(0).stats().snapshots_sent,
        1,
        "an amnesiac node gets a snapshot"
    );
    // It votes from now on: it can take part in the next election.
    net.crash(0);
    net.run_until("a leader of epoch 2", 500, |n| {
        n.leader().is_some() && n.ctl(2).epoch() == 2
    });
}

#[test]
fn a_deposed_leader_rejoins_through_the_new_one() {
    let mut net = Net::new(3);
    net.step();
    // The leader is cut off from both followers (it still hears them).
    net.cut.extend([(0, 1), (0, 2)]);
    net.run_until("a new leader", 500, |n| {
        n.nodes
            .iter()
            .flatten()
            .any(|(c, _)| c.is_leader() && c.epoch() == 2)
    });
    net.cut.clear();
    net.run_until("node 0 back, following", 500, |n| {
        n.ctl(0).serving() && !n.ctl(0).is_leader()
    });
    assert_eq!(net.ctl(0).epoch(), 2);
    assert!(net.ctl(0).stats().step_downs >= 1 || net.ctl(0).stats().joins_requested >= 1);
}

#[test]
fn a_lone_node_is_its_own_quorum() {
    let mut net = Net::new(1);
    net.host_mut(0).held = vec![entry(1, 1)];
    net.nodes[0].as_mut().unwrap().0.state = State::Waiting { deadline: Time(1) };
    net.nodes[0].as_mut().unwrap().0.running = true;
    net.run_until("it leads epoch 2", 100, |n| {
        n.leader() == Some(0) && n.ctl(0).epoch() == 2
    });
    assert_eq!(net.host(0).history.len(), 1);
}

#[test]
fn transfers_from_strangers_are_refused() {
    let mut net = Net::new(3);
    net.step();
    let mut buf = vec![0u8; 512];
    let h = crate::transfer::chunk_header(7, 1, 1);
    let e = entry(1, 1);
    let mut enc = rzab_wire::Encoder::transfer(&mut buf, h, stream(SYNC, 1), 0, true).unwrap();
    assert!(enc.push_item(&e.item()));
    let len = enc.finish();
    let now = net.now;
    let (c, host) = net.nodes[2].as_mut().unwrap();
    c.handle(now, host, &decode(&buf[..len]).unwrap());
    assert_eq!(c.stats().rejected, 1);
    assert!(
        c.receiving.is_empty(),
        "nothing buffered for a transfer never asked for"
    );
    let _ = Received::Session(rzab_wire::SessionItem {
        origin: 0,
        lane: 0,
        session: 0,
        seq: 0,
        owner: 0,
    });
}
