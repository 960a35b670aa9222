//! A node's control thread: the control plane (failure detection,
//! elections, recovery, joins) driven over its own endpoint, acting on the
//! node through [`NodeHost`]. It also timestamps what the failover and
//! catch-up figures need.

use crate::host::NodeHost;
use crate::lane::{Clock, Control as RunPhase, Phase};
use crate::node::{NO_LEADER, NodeShared};
use rzab_proto::{Control, ControlStats, Time};
use rzab_transport::{RecvBatch, SendBatch, Transport};
use rzab_wire::decode;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Nanoseconds on the machine's monotonic clock: comparable between the
/// processes of one machine (a supervisor and its nodes).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What the control thread reports (status lines, the outcome).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatus {
    pub state: String,
    pub epoch: u32,
    pub leader: Option<u8>,
    pub serving: bool,
    pub applied: u64,
    /// Monotonic ns: when this node last won an election and when its
    /// epoch first committed (applied a write of the epoch) here.
    pub led_at_ns: u64,
    pub first_commit_ns: u64,
    /// Monotonic ns when a node restarted without state was promoted.
    pub caught_up_ns: u64,
    /// Keys received in the snapshot this node joined from.
    pub installed_keys: u64,
    /// The latest gaps between applies over 5 ms (monotonic ns).
    pub recent_gaps: Vec<(u64, u64)>,
    /// Control datagrams that did not decode.
    pub decode_errors: u64,
    pub stats: ControlStats,
}

/// The latest status, shared with the reporting thread.
#[derive(Debug, Default)]
pub struct ControlShared {
    status: Mutex<ControlStatus>,
    errors: Mutex<Vec<String>>,
}

impl ControlShared {
    pub fn read(&self) -> ControlStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

pub struct Controller<T> {
    pub control: Control,
    pub host: NodeHost,
    pub node: Arc<NodeShared>,
    pub transport: T,
    pub phase: Arc<RunPhase>,
    pub clock: Clock,
    pub shared: Arc<ControlShared>,
    /// Print state changes on stderr (RZAB_TRACE_CONTROL set).
    pub trace: bool,
    /// Control datagrams that did not decode (dropped, counted).
    pub decode_errors: u64,
}

const BATCH: usize = 32;
/// Longest wait, so the thread notices the end of the run promptly.
const MAX_SLEEP: Duration = Duration::from_millis(5);

impl<T: Transport> Controller<T> {
    pub fn run(mut self) {
        let mtu = self.transport.mtu();
        let mut send = SendBatch::new(BATCH, mtu);
        let mut recv = RecvBatch::new(BATCH, mtu.max(64 * 1024));
        let (mut state, mut epoch) = ("", 0);
        while self.phase.get() != Phase::Stopped {
            let now = self.clock.now();
            recv.clear();
            if let Err(e) = self.transport.recv(&mut recv) {
                self.host.errors.push(format!("control receive failed: {e}"));
            }
            for bytes in recv.iter() {
                match decode(bytes) {
                    Ok(m) => self.control.handle(now, &mut self.host, &m),
                    Err(_) => self.decode_errors += 1,
                }
            }
            self.control.handle_timeout(now, &mut self.host);
            self.transmit(&mut send, now);
            if (self.control.state_name(), self.control.epoch()) != (state, epoch) {
                (state, epoch) = (self.control.state_name(), self.control.epoch());
                self.on_change();
            }
            self.publish();
            let until = self.control.poll_timeout().unwrap_or(Time::NEVER);
            let wait = Duration::from_nanos(until.0.saturating_sub(self.clock.now().0)).min(MAX_SLEEP);
            if !wait.is_zero() {
                let _ = self.transport.wait(wait);
            }
        }
    }

    fn transmit(&mut self, send: &mut SendBatch, now: Time) {
        loop {
            send.clear();
            while let Some(buf) = send.next_buf() {
                match self.control.poll_transmit(now, buf) {
                    Some(t) => send.push(t.dest, t.len),
                    None => break,
                }
            }
            if send.is_empty() {
                return;
            }
            if let Err(e) = self.transport.send(send) {
                self.host.errors.push(format!("control send failed: {e}"));
                return;
            }
        }
    }

    /// The state or epoch changed: note the times the figures need.
    fn on_change(&mut self) {
        if self.trace {
            eprintln!(
                "rzab node {}: {} in epoch {} (leader {:?}, applied {})",
                self.node.id,
                self.control.state_name(),
                self.control.epoch(),
                self.control.leader(),
                self.node.gate.applied()
            );
        }
        let s = &self.node.standing;
        let leader = self.control.leader().unwrap_or(NO_LEADER);
        s.leader.store(leader, Ordering::Relaxed);
        if self.control.is_leader() {
            s.led_at_ns.store(mono_ns(), Ordering::Relaxed);
            s.first_commit_ns.store(0, Ordering::Relaxed);
        }
        if self.control.serving()
            && s.rejoined.load(Ordering::Relaxed)
            && s.caught_up_ns.load(Ordering::Relaxed) == 0
        {
            s.caught_up_ns.store(mono_ns(), Ordering::Relaxed);
        }
    }

    fn publish(&mut self) {
        let s = &self.node.standing;
        let applied = self.node.gate.applied();
        let epoch = self.control.epoch();
        if self.control.is_leader()
            && s.first_commit_ns.load(Ordering::Relaxed) == 0
            && applied.epoch() == epoch
            && applied.counter() > 0
        {
            s.first_commit_ns.store(mono_ns(), Ordering::Relaxed);
        }
        let status = ControlStatus {
            state: self.control.state_name().to_string(),
            epoch,
            leader: self.control.leader(),
            serving: self.control.serving(),
            applied: applied.0,
            led_at_ns: s.led_at_ns.load(Ordering::Relaxed),
            first_commit_ns: s.first_commit_ns.load(Ordering::Relaxed),
            caught_up_ns: s.caught_up_ns.load(Ordering::Relaxed),
            installed_keys: s.installed_keys.load(Ordering::Relaxed),
            recent_gaps: s.recent_gaps(8),
            decode_errors: self.decode_errors,
            stats: *self.control.stats(),
        };
        if let Ok(mut g) = self.shared.status.lock() {
            *g = status;
        }
        if !self.host.errors.is_empty()
            && let Ok(mut g) = self.shared.errors.lock()
        {
            g.append(&mut self.host.errors);
        }
    }
}
