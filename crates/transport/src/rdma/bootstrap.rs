//! The bootstrap exchange: how a lane endpoint learns every member's queue
//! pair number, QKey, LID and GID without a registry (the prototype used
//! memcached), in any start order.
//!
//! Each lane endpoint binds a plain UDP socket to its lane address (its
//! node's address, port + lane) and announces its own values, and which
//! members' values it already holds (node and QP number), to every member.
//! It answers an announce that does not yet list its current QP number at
//! once. It is done when it holds every member's values and every member
//! has listed its own; the endpoint keeps the socket and keeps answering
//! afterwards, so a member that is late (or restarted, with a new QP) still
//! completes, and a restarted member's new values replace the old ones.
//!
//! Datagrams are accepted only from a member's lane address and for this
//! cluster and lane; anything else, or malformed, is counted and dropped.

use super::route::PeerAddress;
use crate::{NodeId, NodeSet};
use rzab_proto::MAX_NODES;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = *b"RZRB";
const VERSION: u8 = 1;
/// The fixed part of an announce; each known member adds 5 bytes.
const HEAD: usize = 40;
/// The longest announce.
pub const MAX_ANNOUNCE: usize = HEAD + 5 * MAX_NODES;
/// How often an unfinished exchange announces itself.
const RESEND: Duration = Duration::from_millis(50);

/// One lane's values, and the members whose values it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub cluster_id: u32,
    pub node: NodeId,
    pub lane: u8,
    pub addr: PeerAddress,
    /// Members (this one included) and the QP number held for each.
    pub known: Vec<(NodeId, u32)>,
}

impl Announce {
    /// Writes the announce into `buf`; returns its length.
    pub fn encode(&self, buf: &mut [u8; MAX_ANNOUNCE]) -> usize {
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = VERSION;
        buf[5] = self.node;
        buf[6] = self.lane;
        let known = &self.known[..self.known.len().min(MAX_NODES)];
        buf[7] = known.len() as u8;
        buf[8..12].copy_from_slice(&self.cluster_id.to_le_bytes());
        buf[12..16].copy_from_slice(&self.addr.qpn.to_le_bytes());
        buf[16..20].copy_from_slice(&self.addr.qkey.to_le_bytes());
        buf[20..22].copy_from_slice(&self.addr.lid.to_le_bytes());
        buf[22..24].fill(0);
        buf[24..40].copy_from_slice(&self.addr.gid);
        for (i, &(n, qpn)) in known.iter().enumerate() {
            let at = HEAD + 5 * i;
            buf[at] = n;
            buf[at + 1..at + 5].copy_from_slice(&qpn.to_le_bytes());
        }
        HEAD + 5 * known.len()
    }

    /// Parses an announce; `None` for anything malformed.
    pub fn decode(b: &[u8]) -> Option<Announce> {
        if b.len() < HEAD || b[..4] != MAGIC || b[4] != VERSION {
            return None;
        }
        let count = usize::from(b[7]);
        if count > MAX_NODES || b.len() != HEAD + 5 * count {
            return None;
        }
        let u32_at = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
        let addr = PeerAddress {
            qpn: u32_at(12)?,
            qkey: u32_at(16)?,
            lid: u16::from_le_bytes([b[20], b[21]]),
            gid: b[24..40].try_into().ok()?,
        };
        let known = (0..count)
            .map(|i| {
                let at = HEAD + 5 * i;
                Some((b[at], u32_at(at + 1)?))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Announce {
            cluster_id: u32_at(8)?,
            node: b[5],
            lane: b[6],
            addr,
            known,
        })
    }
}

/// What an announce did to the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Not for us (another cluster or lane, a non-member, this node).
    Ignored,
    /// A member's values, first heard.
    New,
    /// A member's values as already held.
    Same,
    /// A member's values replaced (it restarted with a new QP).
    Changed,
}

/// The exchange's state, without any I/O.
#[derive(Clone, Debug)]
pub struct Exchange {
    cluster_id: u32,
    me: NodeId,
    lane: u8,
    members: NodeSet,
    own: PeerAddress,
    known: Vec<Option<PeerAddress>>,
    /// Members that listed our current QP number.
    acked: NodeSet,
}

impl Exchange {
    pub fn new(cluster_id: u32, me: NodeId, lane: u8, members: NodeSet, own: PeerAddress) -> Exchange {
        Exchange {
            cluster_id,
            me,
            lane,
            members,
            own,
            known: vec![None; MAX_NODES],
            acked: NodeSet::EMPTY,
        }
    }

    fn others(&self) -> NodeSet {
        self.members.without(self.me)
    }

    /// Takes in an announce from member `a.node`. Returns what it changed
    /// and whether the sender still lacks our values (so should be answered).
    pub fn hear(&mut self, a: &Announce) -> (Heard, bool) {
        if a.cluster_id != self.cluster_id
            || a.lane != self.lane
            || a.node == self.me
            || !self.others().contains(a.node)
        {
            return (Heard::Ignored, false);
        }
        let slot = &mut self.known[usize::from(a.node)];
        let heard = match slot {
            None => Heard::New,
            Some(old) if *old == a.addr => Heard::Same,
            Some(_) => Heard::Changed,
        };
        *slot = Some(a.addr);
        let knows_me = a
            .known
            .iter()
            .any(|&(n, qpn)| n == self.me && qpn == self.own.qpn);
        if knows_me {
            self.acked.insert(a.node);
        } else {
            self.acked.remove(a.node);
        }
        (heard, !knows_me)
    }

    /// This lane's announce.
    pub fn announce(&self) -> Announce {
        let mut known = vec![(self.me, self.own.qpn)];
        known.extend(
            self.members
                .iter()
                .filter_map(|n| Some((n, self.known[usize::from(n)]?.qpn))),
        );
        Announce {
            cluster_id: self.cluster_id,
            node: self.me,
            lane: self.lane,
            addr: self.own,
            known,
        }
    }

    pub fn peer(&self, node: NodeId) -> Option<PeerAddress> {
        self.known.get(usize::from(node)).copied().flatten()
    }

    /// Members whose values we hold and who hold ours.
    pub fn settled(&self) -> NodeSet {
        NodeSet::from_ids(
            self.others()
                .iter()
                .filter(|&n| self.acked.contains(n) && self.peer(n).is_some()),
        )
    }

    /// Whether every member's values are held, and ours by every member.
    pub fn done(&self) -> bool {
        self.settled() == self.others()
    }

    /// Members not yet settled.
    pub fn missing(&self) -> Vec<NodeId> {
        self.others()
            .iter()
            .filter(|&n| !self.settled().contains(n))
            .collect()
    }
}

/// Counters of the exchange's socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootstrapStats {
    pub sent: u64,
    pub received: u64,
    /// Malformed, or from an address that is not a member's lane.
    pub dropped: u64,
}

/// The exchange on its UDP socket.
pub struct Bootstrap {
    socket: UdpSocket,
    lane_addrs: Vec<Option<SocketAddrV4>>,
    exchange: Exchange,
    buf: [u8; MAX_ANNOUNCE],
    pub stats: BootstrapStats,
}

impl Bootstrap {
    /// Binds `own` (this lane's address); `lane_addrs` holds every member's
    /// lane address by node id.
    pub fn bind(
        own: SocketAddrV4,
        lane_addrs: Vec<Option<SocketAddrV4>>,
        exchange: Exchange,
    ) -> io::Result<Bootstrap> {
        let socket = UdpSocket::bind(own)
            .map_err(|e| io::Error::new(e.kind(), format!("binding the bootstrap socket {own}: {e}")))?;
        socket.set_nonblocking(true)?;
        Ok(Bootstrap {
            socket,
            lane_addrs,
            exchange,
            buf: [0; MAX_ANNOUNCE],
            stats: BootstrapStats::default(),
        })
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Announces to `to` (send errors are left to the next resend).
    fn announce(&mut self, to: NodeSet) {
        let len = self.exchange.announce().encode(&mut self.buf);
        for n in to.iter() {
            if let Some(addr) = self.lane_addrs.get(usize::from(n)).copied().flatten()
                && self.socket.send_to(&self.buf[..len], addr).is_ok()
            {
                self.stats.sent += 1;
            }
        }
    }

    /// Reads every waiting announce, answers senders that lack our values,
    /// and returns the members whose values are new or changed.
    pub fn serve(&mut self) -> NodeSet {
        let mut changed = NodeSet::EMPTY;
        let mut answer = NodeSet::EMPTY;
        let mut buf = [0u8; MAX_ANNOUNCE + 1];
        loop {
            let (len, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Would block, or an ICMP error queued by an earlier send.
                Err(_) => break,
            };
            self.stats.received += 1;
            let Some(a) = Announce::decode(&buf[..len]).filter(|a| self.is_member_lane(a.node, from)) else {
                self.stats.dropped += 1;
                continue;
            };
            match self.exchange.hear(&a) {
                (Heard::Ignored, _) => self.stats.dropped += 1,
                (heard, lacks_us) => {
                    if matches!(heard, Heard::New | Heard::Changed) {
                        changed.insert(a.node);
                    }
                    if lacks_us || heard != Heard::Same {
                        answer.insert(a.node);
                    }
                }
            }
        }
        if !answer.is_empty() {
            self.announce(answer);
        }
        changed
    }

    fn is_member_lane(&self, node: NodeId, from: SocketAddr) -> bool {
        let want = self.lane_addrs.get(usize::from(node)).copied().flatten();
        matches!((from, want), (SocketAddr::V4(f), Some(w)) if f == w)
    }

    /// Runs the exchange until it is done or `timeout` passes; `progress`
    /// hears about once a second whom it still waits for.
    pub fn run(&mut self, timeout: Duration, progress: &mut dyn FnMut(&[NodeId])) -> io::Result<()> {
        let start = Instant::now();
        let mut last_said = start;
        let mut last_sent = None::<Instant>;
        loop {
            self.serve();
            let done = self.exchange.done();
            if done || last_sent.is_none_or(|t| t.elapsed() >= RESEND) {
                // Everyone unsettled; once done, everyone once more.
                let settled = self.exchange.settled();
                let to = match done {
                    true => self.exchange.others(),
                    false => {
                        NodeSet::from_ids(self.exchange.others().iter().filter(|&n| !settled.contains(n)))
                    }
                };
                self.announce(to);
                last_sent = Some(Instant::now());
            }
            if done {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no bootstrap answer within {:.0} s from nodes {:?} (check that they run, with the same cluster file, and that UDP reaches their addresses)",
                        timeout.as_secs_f64(),
                        self.exchange.missing()
                    ),
                ));
            }
            if last_said.elapsed() >= Duration::from_secs(1) {
                progress(&self.exchange.missing());
                last_said = Instant::now();
            }
            wait_readable(&self.socket, Duration::from_millis(10));
        }
    }
}

fn wait_readable(socket: &UdpSocket, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let mut fds = [libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let _ = crate::udp::sys::poll(&mut fds, timeout);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdma::grh::ipv4_mapped;
    use std::net::Ipv4Addr;

    fn addr(n: NodeId, qpn: u32) -> PeerAddress {
        PeerAddress {
            qpn,
            qkey: 0x0123_4567,
            lid: 0,
            gid: ipv4_mapped([10, 77, 0, n + 1]),
        }
    }

    #[test]
    fn announces_round_trip_and_malformed_ones_are_refused() {
        let a = Announce {
            cluster_id: 9,
            node: 2,
            lane: 1,
            addr: addr(2, 0x11),
            known: vec![(2, 0x11), (0, 0x22)],
        };
        let mut buf = [0u8; MAX_ANNOUNCE];
        let len = a.encode(&mut buf);
        assert_eq!(len, HEAD + 10);
        assert_eq!(Announce::decode(&buf[..len]), Some(a));
        assert_eq!(Announce::decode(&buf[..len - 1]), None, "truncated");
        assert_eq!(Announce::decode(&buf[..HEAD - 1]), None);
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(Announce::decode(&bad[..len]), None, "magic");
        let mut bad = buf;
        bad[4] = 2;
        assert_eq!(Announce::decode(&bad[..len]), None, "version");
        let mut bad = buf;
        bad[7] = 200;
        assert_eq!(Announce::decode(&bad[..len]), None, "count");
        for n in 0..len {
            let _ = Announce::decode(&buf[..n]); // never panics
        }
    }

    #[test]
    fn an_exchange_is_done_when_all_hold_each_others_current_values() {
        let members = NodeSet::from_ids([0, 1, 2]);
        let mut x: Vec<Exchange> = (0..3)
            .map(|n| Exchange::new(9, n, 0, members, addr(n, 100 + u32::from(n))))
            .collect();
        // 0 hears 1 and 2 before they heard anyone: it must answer both.
        let (a1, a2) = (x[1].announce(), x[2].announce());
        assert_eq!(x[0].hear(&a1), (Heard::New, true));
        assert_eq!(x[0].hear(&a2), (Heard::New, true));
        assert!(!x[0].done(), "they do not hold 0's values yet");
        let a0 = x[0].announce();
        for e in &mut x[1..] {
            assert_eq!(e.hear(&a0), (Heard::New, false), "0 already holds theirs");
        }
        assert_eq!(
            x[1].missing(),
            vec![2],
            "settled with 0, which lists it; 2 unheard"
        );
        for _ in 0..2 {
            let all: Vec<Announce> = x.iter().map(Exchange::announce).collect();
            for (i, e) in x.iter_mut().enumerate() {
                for a in all.iter().filter(|a| usize::from(a.node) != i) {
                    e.hear(a);
                }
            }
        }
        assert!(x.iter().all(Exchange::done));
        assert_eq!(x[0].peer(2), Some(addr(2, 102)));
        // Node 2 restarts with a new QP: everyone takes the new values, and
        // is no longer settled with it until it lists the new QP number.
        x[2] = Exchange::new(9, 2, 0, members, addr(2, 202));
        let a2 = x[2].announce();
        assert_eq!(x[0].hear(&a2), (Heard::Changed, true));
        assert_eq!(x[0].peer(2), Some(addr(2, 202)));
        let a0 = x[0].announce();
        assert_eq!(x[2].hear(&a0), (Heard::New, false));
        assert!(!x[2].done(), "node 1 still lists the old QP 102");
    }

    #[test]
    fn foreign_announces_are_ignored() {
        let members = NodeSet::from_ids([0, 1]);
        let mut x = Exchange::new(9, 0, 3, members, addr(0, 1));
        let mut a = Exchange::new(9, 1, 3, members, addr(1, 2)).announce();
        a.cluster_id = 8;
        assert_eq!(x.hear(&a).0, Heard::Ignored);
        a.cluster_id = 9;
        a.lane = 2;
        assert_eq!(x.hear(&a).0, Heard::Ignored);
        a.lane = 3;
        a.node = 5;
        assert_eq!(x.hear(&a).0, Heard::Ignored, "not a member");
        a.node = 0;
        assert_eq!(x.hear(&a).0, Heard::Ignored, "claims to be us");
        assert_eq!(x.peer(1), None);
    }

    fn lane_addrs(ips: &[[u8; 4]], port: u16) -> Vec<Option<SocketAddrV4>> {
        let mut v = vec![None; MAX_NODES];
        for (n, ip) in ips.iter().enumerate() {
            v[n] = Some(SocketAddrV4::new(Ipv4Addr::from(*ip), port));
        }
        v
    }

    fn free_port() -> u16 {
        UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap_or(41000)
    }

    /// Three lanes over loopback UDP, started in reverse order with gaps,
    /// all finish and hold each other's values.
    #[test]
    fn lanes_started_in_any_order_all_finish_over_udp() {
        let port = free_port();
        let ips = [[127, 0, 9, 1], [127, 0, 9, 2], [127, 0, 9, 3]];
        let addrs = lane_addrs(&ips, port);
        let members = NodeSet::from_ids([0, 1, 2]);
        let threads: Vec<_> = [2u8, 0, 1]
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let addrs = addrs.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(150 * i as u64));
                    let own = addrs[usize::from(n)].expect("member");
                    let x = Exchange::new(9, n, 0, members, addr(n, 500 + u32::from(n)));
                    let mut b = Bootstrap::bind(own, addrs, x).expect("bind");
                    b.run(Duration::from_secs(20), &mut |_| {}).expect("done");
                    // Keep answering a little, as an endpoint does.
                    let end = Instant::now() + Duration::from_millis(300);
                    while Instant::now() < end {
                        b.serve();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    (n, (0..3).map(|m| b.exchange().peer(m)).collect::<Vec<_>>())
                })
            })
            .collect();
        for t in threads {
            let (n, peers) = t.join().expect("thread");
            for m in 0..3u8 {
                let want = (m != n).then(|| addr(m, 500 + u32::from(m)));
                assert_eq!(peers[usize::from(m)], want, "node {n} about node {m}");
            }
        }
    }

    #[test]
    fn a_missing_member_times_out_naming_it_and_strangers_are_dropped() {
        let port = free_port();
        let ips = [[127, 0, 9, 11], [127, 0, 9, 12]];
        let addrs = lane_addrs(&ips, port);
        let x = Exchange::new(9, 0, 0, NodeSet::from_ids([0, 1]), addr(0, 1));
        let mut b = Bootstrap::bind(addrs[0].expect("member"), addrs.clone(), x).expect("bind");
        // A stranger sends a well-formed announce claiming to be node 1.
        let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let a = Exchange::new(9, 1, 0, NodeSet::from_ids([0, 1]), addr(1, 2)).announce();
        let mut buf = [0u8; MAX_ANNOUNCE];
        let len = a.encode(&mut buf);
        stranger
            .send_to(&buf[..len], addrs[0].expect("member"))
            .expect("send");
        stranger
            .send_to(b"garbage", addrs[0].expect("member"))
            .expect("send");
        let err = b.run(Duration::from_millis(400), &mut |_| {}).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("[1]"), "{err}");
        assert_eq!(b.exchange().peer(1), None);
        assert_eq!(b.stats.dropped, 2);
        assert!(b.stats.sent > 0);
    }
}
