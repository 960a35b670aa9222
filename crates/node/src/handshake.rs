//! The start-up handshake: before its lanes start, a node announces itself
//! to every member until it has heard from all of them and all of them are
//! ready, so nodes may start in any order (no "machine 0 first", no
//! registry). Members that started with another cluster file are refused.
//! A node that hears a running member answer instead (the cluster runs
//! without it: it restarted after a crash) stops there and joins the
//! running cluster as a learner; it lost its state, so it must not vote
//! until caught up. (A node that loses the start-up race to a member that
//! already runs joins the same way: safe, at the cost of a snapshot.)

use rzab_proto::{Dest, NodeId, NodeSet};
use rzab_transport::{RecvBatch, SendBatch, Transport};
use rzab_wire::{Body, Encoder, Header, HelloBody, Kind, decode};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct Handshake {
    pub cluster_id: u32,
    pub me: NodeId,
    pub members: NodeSet,
    /// Digest of the cluster file; every member must have the same.
    pub digest: u64,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no answer within {secs:.0} s from nodes {missing:?} (heard from {heard:?})")]
    Timeout {
        secs: f64,
        missing: Vec<NodeId>,
        heard: Vec<NodeId>,
    },
    #[error("node {node} runs with a different cluster file (digest {theirs:016x}, ours {ours:016x})")]
    ConfigMismatch { node: NodeId, theirs: u64, ours: u64 },
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

const RESEND: Duration = Duration::from_millis(50);

/// Runs the handshake on `t` (lane 0). `progress` is told, about once a
/// second, whom it still waits for.
/// How the handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Every member is here: start the cluster together.
    Fresh,
    /// Members already run: join them.
    Rejoin,
}

pub fn handshake<T: Transport>(
    t: &mut T,
    h: &Handshake,
    progress: &mut dyn FnMut(&str),
) -> Result<Start, HandshakeError> {
    let others = h.members.without(h.me);
    let mut heard = NodeSet::from_ids([h.me]);
    let mut ready = NodeSet::EMPTY;
    let start = Instant::now();
    let (mut last_sent, mut last_said) = (None::<Instant>, start);
    let mut send = SendBatch::new(1, t.mtu());
    let mut recv = RecvBatch::new(32, t.mtu().max(64 * 1024));
    loop {
        let done = heard == h.members && ready == others;
        if done || last_sent.is_none_or(|at| at.elapsed() >= RESEND) {
            hello(t, &mut send, h, heard, heard == h.members)?;
            last_sent = Some(Instant::now());
        }
        if done {
            return Ok(Start::Fresh);
        }
        if start.elapsed() >= h.timeout {
            return Err(HandshakeError::Timeout {
                secs: h.timeout.as_secs_f64(),
                missing: h
                    .members
                    .iter()
                    .filter(|&n| !heard.contains(n) || (n != h.me && !ready.contains(n)))
                    .collect(),
                heard: heard.iter().collect(),
            });
        }
        if last_said.elapsed() >= Duration::from_secs(1) {
            let waiting: Vec<NodeId> = others.iter().filter(|&n| !ready.contains(n)).collect();
            progress(&format!("node {}: waiting for nodes {waiting:?} to start", h.me));
            last_said = Instant::now();
        }
        t.wait(Duration::from_millis(10))?;
        recv.clear();
        t.recv(&mut recv)?;
        for bytes in recv.iter() {
            // Early protocol traffic from members already running is dropped:
            // the protocol resends it.
            let Ok(m) = decode(bytes) else { continue };
            let (Kind::Hello, Body::Hello(b)) = (m.header.kind, m.body) else {
                continue;
            };
            let from = m.header.sender;
            if m.header.cluster_id != h.cluster_id || !others.contains(from) {
                continue;
            }
            if b.config_digest != h.digest {
                return Err(HandshakeError::ConfigMismatch {
                    node: from,
                    theirs: b.config_digest,
                    ours: h.digest,
                });
            }
            if b.answer {
                return Ok(Start::Rejoin);
            }
            heard.insert(from);
            if b.ready {
                ready.insert(from);
            }
        }
    }
}

fn hello<T: Transport>(
    t: &mut T,
    send: &mut SendBatch,
    h: &Handshake,
    heard: NodeSet,
    ready: bool,
) -> std::io::Result<()> {
    send.clear();
    let header = Header {
        kind: Kind::Hello,
        cluster_id: h.cluster_id,
        epoch: 0,
        sender: h.me,
        lane: 0,
        count: 0,
        seq: 0,
    };
    let body = HelloBody {
        config_digest: h.digest,
        heard: heard.0,
        ready,
        answer: false,
    };
    let Some(buf) = send.next_buf() else { return Ok(()) };
    let len = Encoder::hello(buf, header, &body)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .finish();
    send.push(Dest::Set(h.members.without(h.me)), len);
    t.send(send)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_transport::inproc::{Fabric, FabricConfig};

    fn fabric() -> std::sync::Arc<Fabric> {
        Fabric::new(FabricConfig {
            members: NodeSet::from_ids([0, 1, 2]),
            lanes: 1,
            mtu: 256,
            queue_depth: 256,
        })
    }

    fn hs(me: NodeId, digest: u64, secs: u64) -> Handshake {
        Handshake {
            cluster_id: 9,
            me,
            members: NodeSet::from_ids([0, 1, 2]),
            digest,
            timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn members_started_in_any_order_all_get_through() {
        let f = fabric();
        let threads: Vec<_> = [2u8, 0, 1]
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let mut ep = f.endpoint(n, 0);
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i as u64));
                    handshake(&mut ep, &hs(n, 1, 20), &mut |_| {})
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }

    #[test]
    fn a_missing_member_times_out_naming_it() {
        let f = fabric();
        let mut a = f.endpoint(0, 0);
        let mut b = f.endpoint(1, 0);
        let tb = std::thread::spawn(move || handshake(&mut b, &hs(1, 1, 1), &mut |_| {}));
        let err = handshake(&mut a, &hs(0, 1, 1), &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, HandshakeError::Timeout { missing, .. } if missing.contains(&2)),
            "{err}"
        );
        assert!(tb.join().unwrap().is_err());
    }

    #[test]
    fn another_cluster_file_is_refused() {
        let f = fabric();
        let mut a = f.endpoint(0, 0);
        let mut b = f.endpoint(1, 0);
        let tb = std::thread::spawn(move || handshake(&mut b, &hs(1, 2, 2), &mut |_| {}));
        let err = handshake(&mut a, &hs(0, 1, 2), &mut |_| {}).unwrap_err();
        assert!(
            matches!(err, HandshakeError::ConfigMismatch { node: 1, .. }),
            "{err}"
        );
        let _ = tb.join();
    }
}
