//! The in-process transport: every node of a cluster in one process, each
//! lane endpoint with a bounded receive queue. A full queue drops the
//! datagram, as an RDMA UD receive ring without a posted buffer does.

use crate::wake::{Sleeper, waker};
use crate::{Dest, NodeId, NodeSet, RecvBatch, SendBatch, Transport, TransportStats};
use crossbeam_queue::ArrayQueue;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::Duration;

/// The shape of an in-process network.
#[derive(Clone, Debug)]
pub struct FabricConfig {
    pub members: NodeSet,
    pub lanes: usize,
    pub mtu: usize,
    /// Datagrams each lane endpoint can hold before dropping.
    pub queue_depth: usize,
}

/// One lane endpoint's receive side: filled buffers in `queue`, empty ones
/// in `pool` (a fixed set circulates; delivery never allocates).
struct Inbox {
    queue: ArrayQueue<Vec<u8>>,
    pool: ArrayQueue<Vec<u8>>,
    sleeper: Arc<Sleeper>,
    dropped: AtomicU64,
}

/// The in-process network shared by every endpoint.
pub struct Fabric {
    cfg: FabricConfig,
    inboxes: Vec<Inbox>,
}

impl Fabric {
    pub fn new(cfg: FabricConfig) -> Arc<Fabric> {
        assert!(cfg.queue_depth > 0 && cfg.lanes > 0);
        let n = crate::NodeSet(u64::MAX).len() * cfg.lanes;
        let inboxes = (0..n)
            .map(|i| {
                let node = (i / cfg.lanes) as NodeId;
                // Only members get buffers; other slots stay empty (drop all).
                let depth = if cfg.members.contains(node) {
                    cfg.queue_depth
                } else {
                    1
                };
                let pool = ArrayQueue::new(depth);
                if cfg.members.contains(node) {
                    for _ in 0..depth {
                        let _ = pool.push(Vec::with_capacity(cfg.mtu));
                    }
                }
                Inbox {
                    queue: ArrayQueue::new(depth),
                    pool,
                    sleeper: Sleeper::new(),
                    dropped: AtomicU64::new(0),
                }
            })
            .collect();
        Arc::new(Fabric { cfg, inboxes })
    }

    fn inbox(&self, node: NodeId, lane: usize) -> Option<&Inbox> {
        self.inboxes.get(node as usize * self.cfg.lanes + lane)
    }

    /// The endpoint of `lane` at `node`.
    pub fn endpoint(self: &Arc<Self>, node: NodeId, lane: usize) -> InprocEndpoint {
        assert!(self.cfg.members.contains(node) && lane < self.cfg.lanes);
        InprocEndpoint {
            fabric: self.clone(),
            node,
            lane,
            stats: TransportStats::default(),
        }
    }
}

pub struct InprocEndpoint {
    fabric: Arc<Fabric>,
    node: NodeId,
    lane: usize,
    stats: TransportStats,
}

impl InprocEndpoint {
    fn own(&self) -> &Inbox {
        &self.fabric.inboxes[self.node as usize * self.fabric.cfg.lanes + self.lane]
    }

    /// Copies `bytes` into a free buffer of `to`'s inbox; drops if none.
    fn deliver(&mut self, to: NodeId, bytes: &[u8]) -> bool {
        let Some(inbox) = self.fabric.inbox(to, self.lane) else {
            return false;
        };
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        let Some(mut buf) = inbox.pool.pop() else {
            inbox.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        // Cannot fail: queue and pool together hold exactly `depth` buffers.
        let _ = inbox.queue.push(buf);
        true
    }
}

impl Transport for InprocEndpoint {
    fn mtu(&self) -> usize {
        self.fabric.cfg.mtu
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<()> {
        self.stats.send_calls += 1;
        let mut woken = NodeSet::EMPTY;
        let me = self.node;
        let others = self.fabric.cfg.members.without(me);
        for (dest, bytes) in batch.iter() {
            if bytes.len() > self.fabric.cfg.mtu {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "datagram exceeds the MTU",
                ));
            }
            let targets = match dest {
                Dest::Node(n) => NodeSet::from_ids([n]),
                Dest::Set(s) => s,
                Dest::Group => others,
            };
            for to in targets.iter().filter(|&n| n != me) {
                if self.deliver(to, bytes) {
                    woken.insert(to);
                }
            }
        }
        // One wake per receiver per batch, after its datagrams are queued.
        for to in woken.iter() {
            if let Some(inbox) = self.fabric.inbox(to, self.lane) {
                inbox.sleeper.notify();
            }
        }
        Ok(())
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.stats.recv_calls += 1;
        let fabric = self.fabric.clone();
        let inbox = &fabric.inboxes[self.node as usize * fabric.cfg.lanes + self.lane];
        while batch.len() < batch.capacity() {
            let Some(buf) = inbox.queue.pop() else { break };
            self.stats.datagrams_recv += 1;
            self.stats.bytes_recv += buf.len() as u64;
            match batch.swap_in(buf) {
                Ok(empty) | Err(empty) => {
                    let _ = inbox.pool.push(empty);
                }
            }
        }
        Ok(batch.len())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let inbox = self.own();
        inbox.sleeper.sleep_unless(timeout, || !inbox.queue.is_empty());
        Ok(())
    }

    fn waker(&self) -> Waker {
        waker(&self.own().sleeper)
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            dropped_full: self.own().dropped.load(Ordering::Relaxed),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fabric(depth: usize) -> Arc<Fabric> {
        Fabric::new(FabricConfig {
            members: NodeSet::from_ids([0, 1, 2]),
            lanes: 2,
            mtu: 64,
            queue_depth: depth,
        })
    }

    fn send(ep: &mut InprocEndpoint, dest: Dest, bytes: &[u8]) {
        let mut b = SendBatch::new(1, 64);
        b.next_buf().unwrap()[..bytes.len()].copy_from_slice(bytes);
        b.push(dest, bytes.len());
        ep.send(&b).unwrap();
    }

    fn recv_all(ep: &mut InprocEndpoint) -> Vec<Vec<u8>> {
        let mut b = RecvBatch::new(8, 64);
        ep.recv(&mut b).unwrap();
        b.iter().map(|d| d.to_vec()).collect()
    }

    #[test]
    fn unicast_group_and_lanes_are_separate() {
        let f = fabric(4);
        let (mut a0, mut b0, mut c0, mut b1) = (
            f.endpoint(0, 0),
            f.endpoint(1, 0),
            f.endpoint(2, 0),
            f.endpoint(1, 1),
        );
        send(&mut a0, Dest::Node(1), b"one");
        send(&mut a0, Dest::Group, b"all");
        assert_eq!(recv_all(&mut b0), vec![b"one".to_vec(), b"all".to_vec()]);
        assert_eq!(recv_all(&mut c0), vec![b"all".to_vec()]);
        assert!(recv_all(&mut a0).is_empty(), "a group send skips the sender");
        assert!(recv_all(&mut b1).is_empty(), "lane 1 hears only lane 1");
        send(&mut b0, Dest::Set(NodeSet::from_ids([0, 2])), b"fan");
        assert_eq!(recv_all(&mut a0), vec![b"fan".to_vec()]);
        assert_eq!(recv_all(&mut c0), vec![b"fan".to_vec()]);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let f = fabric(2);
        let (mut a, mut b) = (f.endpoint(0, 0), f.endpoint(1, 0));
        for i in 0..5u8 {
            send(&mut a, Dest::Node(1), &[i]);
        }
        assert_eq!(recv_all(&mut b), vec![vec![0], vec![1]]);
        assert_eq!(b.stats().dropped_full, 3);
        // Buffers went back to the pool: the queue works again.
        send(&mut a, Dest::Node(1), b"again");
        assert_eq!(recv_all(&mut b), vec![b"again".to_vec()]);
    }

    #[test]
    fn oversized_datagrams_are_refused() {
        let f = fabric(2);
        let mut a = f.endpoint(0, 0);
        let mut b = SendBatch::new(1, 128);
        b.push(Dest::Node(1), 100);
        assert!(a.send(&b).is_err());
    }

    #[test]
    fn wait_returns_when_a_datagram_arrives() {
        let f = fabric(4);
        let mut b = f.endpoint(1, 0);
        let mut a = f.endpoint(0, 0);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            send(&mut a, Dest::Node(1), b"x");
        });
        let start = std::time::Instant::now();
        while recv_all(&mut b).is_empty() {
            b.wait(Duration::from_secs(10)).unwrap();
        }
        t.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "woken by the send, not the timeout"
        );
    }
}
