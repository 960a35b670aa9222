//! [`RdmaEndpoint`]: one lane's UD queue pair as a `Transport`.

use super::RdmaInfo;
use super::ah::Ah;
use super::bootstrap::{Bootstrap, Exchange};
use super::config::{Layout, RdmaConfig};
use super::device::{self, Device};
use super::grh::source_gid;
use super::mcast::{self, Membership};
use super::queues::Queues;
use super::recv::{POLL_BATCH, Receiver, poll};
use super::ring::{Payload, RingLayout};
use super::route::{PeerAddress, Peers, Source};
use super::send::{GroupRoute, Sender, status_str};
use crate::udp::doorbell::Doorbell;
use crate::udp::sys;
use crate::{NodeId, RecvBatch, SendBatch, Transport, TransportStats};
use rdma_mummy_sys::{ibv_ack_cq_events, ibv_get_cq_event, ibv_req_notify_cq, ibv_wc_flags, ibv_wc_status};
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

/// Receive calls between two looks at the bootstrap socket (a late or
/// restarted member's announces are answered even by a lane that never
/// idles; `wait` looks every time).
const SERVE_EVERY: u32 = 1024;

/// One lane's RDMA UD endpoint. Fields drop in order: the multicast
/// membership detaches the QP before it is destroyed, address handles go
/// before their protection domain.
pub struct RdmaEndpoint {
    membership: Option<Membership>,
    group: Option<GroupRoute>,
    peers: Peers<Ah>,
    sender: Sender,
    receiver: Receiver,
    queues: Queues,
    dev: Device,
    bootstrap: Bootstrap,
    doorbell: Arc<Doorbell>,
    mtu: usize,
    timeout: Duration,
    /// Received completions not yet delivered: `receiver.wcs[pending]`.
    pending: std::ops::Range<usize>,
    /// Whether the receive CQ will raise an event on its next completion.
    armed: bool,
    since_serve: u32,
    stats: TransportStats,
    info: RdmaInfo,
}

fn who(cfg: &RdmaConfig) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| {
        let msg = format!("RDMA transport, node {} lane {}: {e}", cfg.node, cfg.lane);
        io::Error::new(e.kind(), msg)
    }
}

impl RdmaEndpoint {
    /// Opens the lane's device, queues and rings, joins its multicast
    /// group and binds its bootstrap socket. Peers are not known yet:
    /// [`bootstrap`](Self::bootstrap) (or [`set_peer`](Self::set_peer)) next.
    pub fn open(cfg: &RdmaConfig) -> io::Result<RdmaEndpoint> {
        let layout = cfg.layout()?;
        Self::open_with(cfg, &layout).map_err(who(cfg))
    }

    /// Opens and bootstraps (blocks until every member answered).
    pub fn new(cfg: &RdmaConfig) -> io::Result<RdmaEndpoint> {
        let mut e = Self::open(cfg)?;
        e.bootstrap(&mut |_| {}).map_err(who(cfg))?;
        Ok(e)
    }

    fn open_with(cfg: &RdmaConfig, layout: &Layout) -> io::Result<RdmaEndpoint> {
        let ip = *layout.own.ip();
        // First the plain question "is there RDMA here", for a clear answer.
        device::names()?;
        let (name, port) = match &cfg.device {
            Some(d) => (d.clone(), cfg.port),
            None => mcast::locate(ip)?,
        };
        let dev = device::open(&name, port, cfg.gid_index, ip)?;
        if cfg.mtu > dev.active_mtu {
            return Err(io::Error::other(format!(
                "mtu {} exceeds the active MTU {} of {} port {} (set protocol.mtu to at most {})",
                cfg.mtu, dev.active_mtu, dev.name, dev.port, dev.active_mtu
            )));
        }
        let cap = |want: usize, limit: usize| if limit > 0 { want.min(limit) } else { want };
        let send_depth = cap(cfg.send_depth, dev.max_qp_wr.min(dev.max_cqe));
        if send_depth != cfg.send_depth {
            return Err(io::Error::other(format!(
                "send_depth {} exceeds what {} allows ({send_depth})",
                cfg.send_depth, dev.name
            )));
        }
        let recv_slots = cap(layout.recv_slots, dev.max_qp_wr.min(dev.max_cqe));
        let queues = Queues::create(&dev, send_depth, recv_slots, cfg.max_inline, cfg.qkey)?;
        let mut receiver = Receiver::new(&queues.pd, RingLayout::new(recv_slots, cfg.mtu))?;
        receiver
            .post(queues.raw_qp())
            .map_err(|e| io::Error::other(format!("posting {recv_slots} receive buffers: {e}")))?;
        let max_inline = queues.max_inline.min(cfg.mtu);
        let sender = Sender::new(&queues.pd, send_depth, cfg.signal_every, cfg.mtu, max_inline)?;
        let (membership, group) = match layout.group {
            Some(g) => {
                let (m, route) = join(cfg, &dev, &queues, ip, g)?;
                (Some(m), Some(route))
            }
            None => (None, None),
        };
        let own = PeerAddress {
            qpn: queues.qp_number(),
            qkey: cfg.qkey,
            lid: dev.lid,
            gid: dev.gid,
        };
        let lane = u8::try_from(cfg.lane).map_err(|_| io::Error::other("lane must be below 256"))?;
        let exchange = Exchange::new(cfg.cluster_id, cfg.node, lane, layout.members, own);
        let bootstrap = Bootstrap::bind(layout.own, layout.lane_addrs.clone(), exchange)?;
        let doorbell = Doorbell::new().map_err(|e| io::Error::new(e.kind(), format!("eventfd: {e}")))?;
        let info = RdmaInfo {
            device: dev.name.clone(),
            port: dev.port,
            link_layer: if dev.roce { "Ethernet" } else { "InfiniBand" }.into(),
            gid_index: dev.gid_index,
            gid: Ipv6Addr::from(dev.gid).to_string(),
            lid: dev.lid,
            qpn: own.qpn,
            qkey: own.qkey,
            mtu: cfg.mtu,
            active_mtu: dev.active_mtu,
            max_inline,
            recv_slots,
            send_depth,
            signal_every: cfg.signal_every,
            group: membership.as_ref().map(|m| m.group().to_string()),
            group_attached: membership.as_ref().is_some_and(Membership::attached),
        };
        Ok(RdmaEndpoint {
            membership,
            group,
            peers: Peers::new(cfg.node, own, layout.members, layout.group.is_some(), !dev.roce),
            sender,
            receiver,
            queues,
            dev,
            bootstrap,
            doorbell,
            mtu: cfg.mtu,
            timeout: cfg.bootstrap_timeout,
            pending: 0..0,
            armed: false,
            since_serve: 0,
            stats: TransportStats::default(),
            info,
        })
    }

    /// Runs the bootstrap exchange until every member's address is known
    /// (and every member knows ours), then makes their address handles.
    /// `progress` hears about once a second whom it still waits for.
    pub fn bootstrap(&mut self, progress: &mut dyn FnMut(&[NodeId])) -> io::Result<()> {
        self.bootstrap.run(self.timeout, progress)?;
        for n in 0..rzab_proto::MAX_NODES as NodeId {
            if let Some(addr) = self.bootstrap.exchange().peer(n) {
                self.set_peer(n, addr)?;
            }
        }
        Ok(())
    }

    /// This lane's address, as peers need it.
    pub fn address(&self) -> PeerAddress {
        *self.peers.own()
    }

    /// Sets (or replaces) a member's address without the exchange: an
    /// address handle is made in this QP's protection domain.
    pub fn set_peer(&mut self, node: NodeId, addr: PeerAddress) -> io::Result<()> {
        if self.peers.get(node).is_some_and(|(a, _)| *a == addr) {
            return Ok(());
        }
        let ah = Ah::to_peer(&self.queues.pd, &self.dev, &addr)
            .map_err(|e| io::Error::new(e.kind(), format!("address handle to node {node}: {e}")))?;
        if self.peers.get(node).is_some() {
            // The handle replaced may still be named by sends in flight.
            self.sender.drain(self.queues.raw_send_cq(), &mut self.stats);
        }
        if !self.peers.set(node, addr, ah) {
            return Err(io::Error::other(format!("node {node} is not another member")));
        }
        Ok(())
    }

    pub fn info(&self) -> RdmaInfo {
        self.info.clone()
    }

    /// Answers bootstrap announces; takes in members' new addresses.
    fn serve(&mut self) {
        self.since_serve = 0;
        let changed = self.bootstrap.serve();
        for n in changed.iter() {
            if let Some(addr) = self.bootstrap.exchange().peer(n)
                && self.set_peer(n, addr).is_err()
            {
                self.stats.recv_errors += 1;
            }
        }
    }

    /// Delivers one received completion into `batch`, and frees its slot.
    fn take(&mut self, i: usize, batch: &mut RecvBatch) -> io::Result<()> {
        let wc = self.receiver.wcs[i];
        let Some(slot) = self.receiver.ring.complete(wc.wr_id) else {
            self.stats.recv_errors += 1;
            return Ok(());
        };
        let result = self.deliver(slot, &wc, batch);
        self.receiver.ring.release(slot);
        result
    }

    fn deliver(&mut self, slot: usize, wc: &rdma_mummy_sys::ibv_wc, batch: &mut RecvBatch) -> io::Result<()> {
        let s = &mut self.stats;
        if wc.status != ibv_wc_status::IBV_WC_SUCCESS {
            s.recv_errors += 1;
            if wc.status == ibv_wc_status::IBV_WC_WR_FLUSH_ERR {
                return Err(io::Error::other(format!(
                    "RDMA queue pair failed: {}",
                    status_str(wc.status)
                )));
            }
            return Ok(());
        }
        let layout = *self.receiver.ring.layout();
        let bytes = match layout.payload(slot, wc.byte_len as usize) {
            Payload::Bytes(r) => r,
            Payload::Oversize => {
                s.dropped_oversize += 1;
                return Ok(());
            }
            Payload::Runt => {
                s.recv_errors += 1;
                return Ok(());
            }
        };
        let gid = (wc.wc_flags & ibv_wc_flags::IBV_WC_GRH.0 != 0)
            .then(|| source_gid(self.receiver.mem.bytes(layout.grh(slot))))
            .flatten();
        match self.peers.classify(wc.src_qp, gid, wc.slid) {
            Source::Peer(_) => {
                let data = self.receiver.mem.bytes(bytes);
                if batch.push_copy(data) {
                    s.datagrams_recv += 1;
                    s.bytes_recv += data.len() as u64;
                }
            }
            Source::Own => s.dropped_own += 1,
            Source::Unknown => s.dropped_unknown_source += 1,
        }
        Ok(())
    }

    /// Reposts the freed receive buffers (one doorbell).
    fn repost(&mut self) {
        if self.receiver.ring.to_post().is_empty() {
            return;
        }
        if self.receiver.post(self.queues.raw_qp()).is_err() {
            self.stats.recv_errors += 1;
        }
    }

    fn poll_recv(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            let n = poll(self.queues.raw_recv_cq(), &mut self.receiver.wcs[..POLL_BATCH])?;
            self.stats.cq_polls += 1;
            self.pending = 0..n;
        }
        Ok(())
    }

    /// Takes the receive CQ's event, if one came, and re-allows the next.
    fn take_cq_event(&mut self) {
        let mut cq = std::ptr::null_mut();
        let mut ctx = std::ptr::null_mut();
        // SAFETY: the channel is live and non-blocking; the out-pointers are
        // locals. Only our receive CQ is attached to this channel.
        let rc = unsafe { ibv_get_cq_event(self.queues.channel.comp_channel().as_ptr(), &mut cq, &mut ctx) };
        if rc == 0 && !cq.is_null() {
            // SAFETY: `cq` is the CQ the event came from; acknowledged at
            // once, so destroying the CQ never waits for us.
            unsafe { ibv_ack_cq_events(cq, 1) };
            self.armed = false;
        }
    }
}

/// Joins the lane's group on `dev` and makes its address handle in the
/// QP's protection domain (the QP receives the group if `cfg.join_group`).
fn join(
    cfg: &RdmaConfig,
    dev: &Device,
    queues: &Queues,
    ip: std::net::Ipv4Addr,
    group: std::net::Ipv4Addr,
) -> io::Result<(Membership, GroupRoute)> {
    let mut m = Membership::join(ip, group, &dev.name)?;
    if m.qkey != cfg.qkey {
        return Err(io::Error::other(format!(
            "multicast group {group} has QKey {:#x}, the QP {:#x} (set rdma.qkey = {:#x})",
            m.qkey, cfg.qkey, m.qkey
        )));
    }
    if dev.roce && dev.gid[..12] != super::grh::ipv4_mapped([0; 4])[..12] {
        return Err(io::Error::other(format!(
            "IPv4 multicast on RoCE needs the IPv4 GID of {ip}, not GID index {} ({}); leave rdma.gid_index unset",
            dev.gid_index,
            Ipv6Addr::from(dev.gid)
        )));
    }
    if cfg.join_group {
        let qp = NonNull::new(queues.raw_qp()).ok_or_else(|| io::Error::other("no QP"))?;
        m.attach(qp)?;
    }
    // Send from the GID peers know us by (the source check compares it).
    let mut attr = m.ah_attr;
    attr.grh.sgid_index = dev.gid_index;
    attr.port_num = dev.port;
    let ah = Ah::new(&queues.pd, &attr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("address handle to multicast group {group}: {e}"),
        )
    })?;
    let route = GroupRoute {
        ah,
        qpn: m.qpn,
        qkey: m.qkey,
    };
    Ok((m, route))
}

impl Transport for RdmaEndpoint {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<()> {
        batch.check_mtu(self.mtu)?;
        if batch.is_empty() {
            return Ok(());
        }
        self.sender.send(
            batch,
            &self.peers,
            self.group.as_ref(),
            &mut self.queues,
            &mut self.stats,
        )
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.stats.recv_calls += 1;
        self.since_serve += 1;
        if self.since_serve >= SERVE_EVERY {
            self.serve();
        }
        let mut result = Ok(());
        while batch.len() < batch.capacity() {
            if let Err(e) = self.poll_recv() {
                result = Err(e);
                break;
            }
            if self.pending.is_empty() {
                break;
            }
            while batch.len() < batch.capacity() && !self.pending.is_empty() {
                let i = self.pending.start;
                self.pending.start += 1;
                if let Err(e) = self.take(i, batch) {
                    result = Err(e);
                }
            }
            if result.is_err() {
                break;
            }
        }
        self.repost();
        result.map(|()| batch.len())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        if !self.armed {
            // SAFETY: the receive CQ is live; arming takes no pointers of ours.
            let rc = unsafe { ibv_req_notify_cq(self.queues.raw_recv_cq(), 0) };
            if rc != 0 {
                return Err(io::Error::other(format!("arming the receive CQ: {rc}")));
            }
            self.armed = true;
        }
        // A completion that came before arming raises no event: look once.
        self.poll_recv()?;
        if !self.pending.is_empty() {
            return Ok(());
        }
        let entry = |fd: i32| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            entry(self.doorbell.as_raw_fd()),
            entry(self.queues.channel.as_raw_fd()),
            entry(self.bootstrap.socket().as_raw_fd()),
        ];
        sys::poll(&mut fds, timeout)?;
        if fds[0].revents != 0 {
            self.doorbell.answer();
        }
        if fds[1].revents != 0 {
            self.take_cq_event();
        }
        if fds[2].revents != 0 {
            self.serve();
        }
        Ok(())
    }

    fn waker(&self) -> Waker {
        Waker::from(self.doorbell.clone())
    }

    /// An empty poll of the CQ reads memory the device writes (no system
    /// call): poll a while before sleeping on the completion channel.
    fn idle_polls(&self) -> u32 {
        64
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }
}

impl Drop for RdmaEndpoint {
    fn drop(&mut self) {
        // Sends in flight name address handles about to be destroyed.
        let cq = self.queues.raw_send_cq();
        self.sender.drain(cq, &mut self.stats);
        // Detach from the group before the QP goes (a QP still attached
        // cannot be destroyed).
        self.membership.take();
        if self.armed {
            // Any event raised but not read is read and acknowledged, or
            // destroying the CQ would wait for it forever.
            self.take_cq_event();
        }
    }
}
