//! The loopback UDP ceiling: how many datagrams per second one sender
//! thread can deliver to one receiver thread through the UDP transport, for
//! the datagram sizes rzab sends and each way of batching them. The figures
//! bound what a lane can do over UDP on this machine.
//!
//! Both ends are real [`UdpEndpoint`]s, so the figures include the
//! transport's own work (planning, source checks, the copy into the batch).

use crate::udp::{UdpConfig, UdpEndpoint};
use crate::{Dest, RecvBatch, SendBatch, Transport, TransportStats};
use rzab_proto::BroadcastMode;
use serde::Serialize;
use std::fmt::Write as _;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetBenchConfig {
    /// Payload sizes in bytes (each at most 65507).
    pub sizes: Vec<usize>,
    /// How long the sender sends in each case.
    pub duration: Duration,
    /// The loopback address both ends use.
    pub addr: Ipv4Addr,
    pub modes: Vec<NetMode>,
}

impl Default for NetBenchConfig {
    /// rzab's datagrams: 64 B acks, ~300 B small batches, full 1472 B
    /// (Ethernet) and 4096 B prepares; 2 s per case, every mode.
    fn default() -> Self {
        NetBenchConfig {
            sizes: vec![64, 300, 1472, 4096],
            duration: Duration::from_secs(2),
            addr: Ipv4Addr::LOCALHOST,
            modes: NetMode::ALL.to_vec(),
        }
    }
}

/// How the sender batches and the receiver reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetMode {
    /// One datagram per sendmmsg.
    Sendmmsg1,
    /// 32 datagrams per sendmmsg, no offload.
    Sendmmsg32,
    /// 32 datagrams per send as GSO super-datagrams; the receiver uses GRO.
    GsoGro,
    /// The same GSO sends to a receiver without GRO (the kernel splits them).
    Gso,
}

/// Datagrams per send call in the batched modes.
const BATCH: usize = 32;
/// How long the receiver keeps reading after the sender stops.
const DRAIN: Duration = Duration::from_millis(100);

impl NetMode {
    pub const ALL: [NetMode; 4] = [
        NetMode::Sendmmsg1,
        NetMode::Sendmmsg32,
        NetMode::GsoGro,
        NetMode::Gso,
    ];

    pub fn label(self) -> &'static str {
        match self {
            NetMode::Sendmmsg1 => "sendmmsg x1",
            NetMode::Sendmmsg32 => "sendmmsg x32",
            NetMode::GsoGro => "GSO x32 + GRO",
            NetMode::Gso => "GSO x32, no GRO",
        }
    }

    fn per_send(self) -> usize {
        if self == NetMode::Sendmmsg1 { 1 } else { BATCH }
    }

    fn gso(self) -> bool {
        matches!(self, NetMode::GsoGro | NetMode::Gso)
    }

    fn gro(self) -> bool {
        self == NetMode::GsoGro
    }
}

/// One measured case.
#[derive(Clone, Debug, Serialize)]
pub struct NetCase {
    pub mode: NetMode,
    pub payload: usize,
    /// How long the sender sent.
    pub seconds: f64,
    pub sent: u64,
    pub delivered: u64,
    pub datagrams_per_s: f64,
    /// Delivered payload bytes per second.
    pub bytes_per_s: f64,
    /// The fraction of sent datagrams not delivered.
    pub loss: f64,
    pub sender: TransportStats,
    pub receiver: TransportStats,
}

/// Every case, and what the kernel granted the sockets.
#[derive(Clone, Debug, Serialize)]
pub struct NetBenchReport {
    pub cases: Vec<NetCase>,
    pub rcvbuf: usize,
    pub sndbuf: usize,
    pub gso: bool,
    pub gro: bool,
}

/// Runs every (mode, size) case in turn, each on fresh sockets.
pub fn run(cfg: &NetBenchConfig) -> io::Result<NetBenchReport> {
    let mut report = NetBenchReport {
        cases: Vec::new(),
        rcvbuf: 0,
        sndbuf: 0,
        gso: false,
        gro: false,
    };
    for &payload in &cfg.sizes {
        for &mode in &cfg.modes {
            let (tx, rx) = pair(cfg.addr, payload, mode)?;
            let (ti, ri) = (tx.info(), rx.info());
            (report.rcvbuf, report.sndbuf) = (ri.rcvbuf, ti.sndbuf);
            report.gso |= ti.gso;
            report.gro |= ri.gro;
            report.cases.push(measure(tx, rx, payload, mode, cfg.duration));
        }
    }
    Ok(report)
}

/// A sender (node 0) and receiver (node 1) on two ports the kernel picked.
fn pair(addr: Ipv4Addr, payload: usize, mode: NetMode) -> io::Result<(UdpEndpoint, UdpEndpoint)> {
    let probes = [
        UdpSocket::bind(SocketAddrV4::new(addr, 0))?,
        UdpSocket::bind(SocketAddrV4::new(addr, 0))?,
    ];
    let members: Vec<_> = probes
        .iter()
        .zip(0..)
        .map(|(s, n)| {
            s.local_addr()
                .map(|a| (n, SocketAddr::V4(SocketAddrV4::new(addr, a.port()))))
        })
        .collect::<io::Result<_>>()?;
    drop(probes);
    let open = |node| {
        let mut c = UdpConfig::new(node, 0, members.clone());
        c.mtu = payload;
        c.broadcast = BroadcastMode::Unicast;
        c.gso = mode.gso();
        c.gro = mode.gro();
        UdpEndpoint::new(&c)
    };
    Ok((open(0)?, open(1)?))
}

fn measure(
    mut tx: UdpEndpoint,
    mut rx: UdpEndpoint,
    payload: usize,
    mode: NetMode,
    run: Duration,
) -> NetCase {
    let done = AtomicBool::new(false);
    let ((sender, seconds), receiver) = std::thread::scope(|s| {
        let r = s.spawn(|| receive(&mut rx, payload, &done, run + DRAIN * 10));
        let out = send(&mut tx, payload, mode.per_send(), run);
        done.store(true, Ordering::Release);
        // The receiver only reads and waits; it cannot panic but on a bug.
        (out, r.join().unwrap_or_default())
    });
    let (sent, delivered) = (sender.datagrams_sent, receiver.datagrams_recv);
    NetCase {
        mode,
        payload,
        seconds,
        sent,
        delivered,
        datagrams_per_s: delivered as f64 / seconds,
        bytes_per_s: receiver.bytes_recv as f64 / seconds,
        loss: if sent == 0 {
            0.0
        } else {
            1.0 - delivered as f64 / sent as f64
        },
        sender,
        receiver,
    }
}

/// Sends batches of `per_send` datagrams for `run`; returns the stats and
/// the seconds it really took.
fn send(tx: &mut UdpEndpoint, payload: usize, per_send: usize, run: Duration) -> (TransportStats, f64) {
    let mut batch = SendBatch::new(per_send, payload);
    while let Some(buf) = batch.next_buf() {
        buf.fill(0x5a);
        batch.push(Dest::Node(1), payload);
    }
    let start = Instant::now();
    while start.elapsed() < run {
        // Errors are counted in the stats; a benchmark keeps going.
        for _ in 0..16 {
            let _ = tx.send(&batch);
        }
    }
    (tx.stats(), start.elapsed().as_secs_f64())
}

/// Reads until the sender is done and the socket has been quiet for
/// `DRAIN`, or `limit` passes.
fn receive(rx: &mut UdpEndpoint, payload: usize, done: &AtomicBool, limit: Duration) -> TransportStats {
    let mut batch = RecvBatch::new(64, payload);
    let start = Instant::now();
    let mut quiet_since = None;
    while start.elapsed() < limit {
        batch.clear();
        if rx.recv(&mut batch).unwrap_or(0) > 0 {
            quiet_since = None;
            continue;
        }
        if done.load(Ordering::Acquire) {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= DRAIN {
                break;
            }
        }
        let _ = rx.wait(Duration::from_millis(5));
    }
    rx.stats()
}

/// The report as a table, one row per case. `rx-full` is the part of the
/// loss the kernel reported as dropped on the receiver's full socket queue.
pub fn format_table(r: &NetBenchReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "loopback UDP ceiling (one sender, one receiver thread); socket buffers granted: \
         rcv {} KiB, snd {} KiB; GSO {}, GRO {}",
        r.rcvbuf >> 10,
        r.sndbuf >> 10,
        if r.gso { "available" } else { "unavailable" },
        if r.gro { "available" } else { "unavailable" },
    );
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>11} {:>11} {:>9} {:>7} {:>8} {:>10} {:>10}",
        "mode", "payload", "sent M/s", "deliv M/s", "MB/s", "loss", "rx-full", "dgram/send", "segs/read"
    );
    for c in &r.cases {
        let _ = writeln!(out, "{}", row(c));
    }
    out
}

fn row(c: &NetCase) -> String {
    let per = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let segs_per_read = per(c.receiver.gro_segments, c.receiver.gro_reads);
    format!(
        "{:<16} {:>7} {:>11.3} {:>11.3} {:>9.1} {:>6.1}% {:>7.1}% {:>10.1} {:>10.1}",
        c.mode.label(),
        c.payload,
        c.sent as f64 / c.seconds / 1e6,
        c.datagrams_per_s / 1e6,
        c.bytes_per_s / 1e6,
        c.loss * 100.0,
        per(c.receiver.dropped_full, c.sent) * 100.0,
        per(c.sender.datagrams_sent, c.sender.send_calls),
        segs_per_read,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_run_delivers_and_formats() {
        let cfg = NetBenchConfig {
            sizes: vec![64, 1472],
            duration: Duration::from_millis(50),
            ..NetBenchConfig::default()
        };
        let r = run(&cfg).expect("bench");
        assert_eq!(r.cases.len(), 8);
        for c in &r.cases {
            assert!(c.delivered > 0, "{:?} {} delivered nothing", c.mode, c.payload);
            assert!(c.delivered <= c.sent);
        }
        let table = format_table(&r);
        assert!(table.contains("GSO x32 + GRO") && table.lines().count() == 10);
    }
}
