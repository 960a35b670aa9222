//! The run-time configuration of a cluster run: shape, protocol knobs and
//! workload. Every knob has the prototype's value as default where it had one.

use rzab_proto::{BroadcastMode, ControlConfig, LaneConfig, NodeId, NodeSet, Span};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// How keys are drawn. Written `uniform`, `zipf` or `zipf:EXPONENT`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Distribution {
    Uniform,
    /// Zipf with this exponent; hot keys are spread over the key space.
    Zipf {
        exponent: f64,
    },
}

impl FromStr for Distribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Distribution::Uniform),
            "zipf" => Ok(Distribution::Zipf { exponent: 0.99 }),
            _ => {
                let exp = s
                    .strip_prefix("zipf:")
                    .ok_or_else(|| format!("'{s}' is not uniform, zipf or zipf:EXPONENT"))?;
                let exponent: f64 = exp.parse().map_err(|_| format!("'{exp}' is not a number"))?;
                if !(exponent > 0.0 && exponent.is_finite()) {
                    return Err(format!("zipf exponent {exponent} must be positive"));
                }
                Ok(Distribution::Zipf { exponent })
            }
        }
    }
}

impl TryFrom<String> for Distribution {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Distribution> for String {
    fn from(d: Distribution) -> String {
        d.to_string()
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Distribution::Uniform => write!(f, "uniform"),
            Distribution::Zipf { exponent } => write!(f, "zipf:{exponent}"),
        }
    }
}

/// How an idle lane thread waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin briefly, then yield, then sleep until woken: fits more threads than cores.
    #[default]
    Adaptive,
    /// Never sleep: for dedicated cores.
    Busy,
}

impl FromStr for PollMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adaptive" => Ok(PollMode::Adaptive),
            "busy" => Ok(PollMode::Busy),
            _ => Err(format!("'{s}' is not adaptive or busy")),
        }
    }
}

/// What every lane's sessions do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadConfig {
    /// Closed-loop sessions per lane (prototype: 22).
    pub sessions: u32,
    /// Fraction of operations that are writes, 0 to 1.
    pub write_ratio: f64,
    pub keys: u64,
    pub value_size: usize,
    pub distribution: Distribution,
    pub seed: u64,
    /// One operation per line (`r KEY` or `w KEY`) instead of generated ops.
    pub trace_file: Option<PathBuf>,
    /// Generated operations per lane before the trace repeats.
    pub trace_len: usize,
    /// Most operations a lane issues per turn (prototype: 1000).
    pub issue_batch: usize,
    /// Check session guarantees on every read (costs memory per key touched).
    pub verify: bool,
    /// Stop issuing after this many operations per lane (the run still
    /// ends at its duration at the latest).
    pub ops_per_lane: Option<u64>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            sessions: 22,
            write_ratio: 0.05,
            keys: 1_000_000,
            value_size: 32,
            distribution: Distribution::Uniform,
            seed: 42,
            trace_file: None,
            trace_len: 1 << 20,
            issue_batch: 1000,
            verify: false,
            ops_per_lane: None,
        }
    }
}

/// Protocol knobs shared by every lane.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtoConfig {
    pub mtu: usize,
    pub broadcast: BroadcastMode,
    pub prepare_credits: usize,
    pub commit_credits: usize,
    pub write_credits: usize,
    pub prepare_batch_max: usize,
    pub write_batch_max: usize,
    pub log_capacity: usize,
    /// Bytes of values a leader lane retains (the log is full when either
    /// this or `log_capacity` runs out).
    pub log_bytes: usize,
    pub window: usize,
    pub retransmit_timeout_us: u64,
    pub min_retransmit_timeout_us: u64,
    /// Leader heartbeat period (failure detection).
    pub heartbeat_ms: f64,
    /// Silence from the leader after which a follower starts an election
    /// (randomized in [t, 2t)).
    pub election_timeout_ms: f64,
    /// Retransmission timeout of state transfers (snapshots, histories).
    pub transfer_timeout_ms: f64,
    /// Applied writes each lane keeps so a node that missed a few gets
    /// them instead of a whole snapshot.
    pub history_retained: usize,
}

impl Default for ProtoConfig {
    fn default() -> Self {
        let d = LaneConfig::new(0, 0, NodeSet::from_ids([0]), 0, 0);
        ProtoConfig {
            mtu: d.mtu,
            broadcast: d.broadcast,
            prepare_credits: d.prepare_credits,
            commit_credits: d.commit_credits,
            write_credits: d.write_credits,
            prepare_batch_max: d.prepare_batch_max,
            write_batch_max: d.write_batch_max,
            log_capacity: d.log_capacity,
            log_bytes: d.log_bytes,
            window: d.window,
            retransmit_timeout_us: d.retransmit_timeout.as_micros(),
            min_retransmit_timeout_us: d.min_retransmit_timeout.as_micros(),
            heartbeat_ms: 5.0,
            election_timeout_ms: 25.0,
            transfer_timeout_ms: 10.0,
            history_retained: 1 << 16,
        }
    }
}

/// External clients (`rzab serve`): sessions over TCP beside (or instead
/// of) the built-in workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsConfig {
    /// Client sessions each lane can hold at once (0: no client service).
    pub slots: u32,
    /// Longest key in bytes.
    pub max_key: usize,
    /// Longest value in bytes.
    pub max_value: usize,
    /// Most client keys the store holds.
    pub capacity: usize,
    /// Requests a connection may have in flight; past it the server stops
    /// reading from the connection until replies go out.
    pub max_inflight: usize,
    /// A shared secret clients must present (none: anyone may connect).
    pub token: Option<String>,
    /// Writes one session may have in flight in the protocol (they still
    /// apply in the order issued).
    pub write_depth: usize,
    /// Threads serving connections at each node; 0 serves them in the lane's
    /// thread (one thread less, no wake-up between a connection and its
    /// lane) when the node has one lane and the transport allows it (UDP),
    /// else in one thread.
    pub threads: usize,
}

impl Default for ClientsConfig {
    fn default() -> Self {
        ClientsConfig {
            slots: 0,
            max_key: 64,
            max_value: 1024,
            capacity: 100_000,
            max_inflight: 1024,
            token: None,
            write_depth: 16,
            threads: 0,
        }
    }
}

impl ClientsConfig {
    pub fn enabled(&self) -> bool {
        self.slots > 0
    }

    /// Bytes a client item's value takes in the store (key included).
    pub fn item_size(&self) -> usize {
        rzab_store::KEY_OVERHEAD + self.max_key + self.max_value
    }

    /// Longest request body: a put of the longest key and value.
    pub fn max_request(&self) -> usize {
        1 + 2 + self.max_key + 4 + self.max_value
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled() {
            return Ok(());
        }
        if self.slots > 1 << 16 {
            return Err(bad("client.slots", format!("{} is not in 0..=65536", self.slots)));
        }
        if self.max_key == 0 || self.max_key > rzab_store::MAX_KEY_LEN {
            return Err(bad(
                "client.max-key",
                format!("{} is not in 1..={}", self.max_key, rzab_store::MAX_KEY_LEN),
            ));
        }
        if self.max_value > 60_000 {
            return Err(bad(
                "client.max-value",
                format!("{} is not in 0..=60000 bytes", self.max_value),
            ));
        }
        if self.capacity == 0 || self.capacity > 1 << 30 {
            return Err(bad(
                "client.capacity",
                format!("{} is not in 1..=2^30 keys", self.capacity),
            ));
        }
        if self.max_inflight == 0 || self.max_inflight > 1 << 16 {
            return Err(bad(
                "client.max-inflight",
                format!("{} is not in 1..=65536", self.max_inflight),
            ));
        }
        if self.write_depth == 0 || self.write_depth > 1024 {
            return Err(bad(
                "client.write-depth",
                format!("{} is not in 1..=1024", self.write_depth),
            ));
        }
        if self.threads > 64 {
            return Err(bad(
                "client.threads",
                format!("{} is not in 0..=64", self.threads),
            ));
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > 1024)
        {
            return Err(bad("client.token", "must be 1 to 1024 bytes"));
        }
        Ok(())
    }
}

/// One whole run of a cluster under load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub cluster_id: u32,
    pub nodes: u8,
    pub lanes: u8,
    pub leader: NodeId,
    pub duration_s: f64,
    pub interval_s: f64,
    /// Longest wait for every write to complete and every replica to
    /// converge at the end, before the run is declared stalled.
    pub drain_timeout_s: f64,
    pub poll: PollMode,
    /// Datagrams each in-process lane endpoint queues before dropping.
    pub queue_depth: usize,
    /// Fraction of received datagrams each lane loses on purpose (fault injection).
    pub loss: f64,
    /// Nice value for lane and control threads (0: unchanged). Below 0
    /// (needs CAP_SYS_NICE, else ignored with a warning), the protocol's
    /// threads win the CPU from client-serving threads when they wake:
    /// `rzab serve` uses -10.
    #[serde(default)]
    pub lane_nice: i32,
    pub proto: ProtoConfig,
    pub workload: WorkloadConfig,
    #[serde(default)]
    pub clients: ClientsConfig,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            cluster_id: 1,
            nodes: 3,
            lanes: 1,
            leader: 0,
            duration_s: 10.0,
            interval_s: 1.0,
            drain_timeout_s: 10.0,
            poll: PollMode::Adaptive,
            queue_depth: 4096,
            loss: 0.0,
            lane_nice: 0,
            proto: ProtoConfig::default(),
            workload: WorkloadConfig::default(),
            clients: ClientsConfig::default(),
        }
    }
}

/// A configuration that cannot run, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

pub(crate) fn bad(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

impl RunConfig {
    pub fn members(&self) -> NodeSet {
        NodeSet::from_ids(0..self.nodes)
    }

    /// Sessions per lane: the workload's, then the client slots.
    pub fn lane_sessions(&self) -> u32 {
        self.workload.sessions + self.clients.slots
    }

    /// Writes a follower lane may hold pending: one per workload session,
    /// `write_depth` per client slot.
    pub fn pending_writes(&self) -> usize {
        let c = &self.clients;
        (self.workload.sessions as usize + c.slots as usize * c.write_depth).max(1)
    }

    /// Longest value the store and the lanes carry.
    pub fn value_max(&self) -> usize {
        let c = &self.clients;
        if c.enabled() {
            // A connection's `Bind` carries a fence in its value.
            self.workload
                .value_size
                .max(c.item_size())
                .max(rzab_wire::BIND_FENCE_LEN)
        } else {
            self.workload.value_size
        }
    }

    /// Keys the store holds: the workload's and the clients'.
    pub fn store_capacity(&self) -> usize {
        let c = &self.clients;
        self.workload.keys as usize + if c.enabled() { c.capacity } else { 0 }
    }

    /// The lane state machine config for `lane` at `node` in the first epoch.
    pub fn lane_config(&self, node: NodeId, lane: u8) -> LaneConfig {
        self.lane_config_in(node, lane, 1, self.leader)
    }

    /// The lane config for `lane` at `node` in `epoch`, led by `leader`.
    pub fn lane_config_in(&self, node: NodeId, lane: u8, epoch: u32, leader: NodeId) -> LaneConfig {
        let p = &self.proto;
        let mut c = LaneConfig::new(self.cluster_id, node, self.members(), leader, lane);
        c.epoch = epoch;
        c.mtu = p.mtu;
        c.value_max = self.value_max();
        c.broadcast = p.broadcast;
        c.prepare_credits = p.prepare_credits;
        c.commit_credits = p.commit_credits;
        c.write_credits = p.write_credits;
        c.prepare_batch_max = p.prepare_batch_max;
        c.write_batch_max = p.write_batch_max;
        c.log_capacity = p.log_capacity;
        c.log_bytes = p.log_bytes;
        c.window = p.window;
        c.max_sessions = self.lane_sessions().max(1);
        c.max_pending_writes = self.pending_writes();
        c.retransmit_timeout = Span::from_micros(p.retransmit_timeout_us);
        c.min_retransmit_timeout = Span::from_micros(p.min_retransmit_timeout_us);
        c
    }

    /// The control plane's config at `node` (seeded per node and process
    /// start, so restarted nodes draw fresh election timeouts).
    pub fn control_config(&self, node: NodeId, seed: u64) -> ControlConfig {
        let p = &self.proto;
        let ms = |v: f64| Span((v * 1e6) as u64);
        let mut c = ControlConfig::new(self.cluster_id, node, self.members());
        c.mtu = p.mtu;
        c.heartbeat = ms(p.heartbeat_ms);
        c.election_timeout = ms(p.election_timeout_ms);
        c.transfer_timeout = ms(p.transfer_timeout_ms);
        c.seed = seed;
        c
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes == 0 || self.nodes as usize > rzab_proto::MAX_NODES {
            return Err(bad(
                "nodes",
                format!("{} is not in 1..={}", self.nodes, rzab_proto::MAX_NODES),
            ));
        }
        if self.lanes == 0 {
            return Err(bad("lanes", "must be at least 1"));
        }
        if self.leader >= self.nodes {
            return Err(bad(
                "leader",
                format!("{} is not a node id below {}", self.leader, self.nodes),
            ));
        }
        for (field, v) in [("duration", self.duration_s), ("interval", self.interval_s)] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(bad(field, format!("{v} must be a positive number of seconds")));
            }
        }
        if !(self.drain_timeout_s > 0.0 && self.drain_timeout_s.is_finite()) {
            return Err(bad("drain-timeout", "must be a positive number of seconds"));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err(bad("loss", format!("{} is not a fraction in 0..1", self.loss)));
        }
        if !(-20..=19).contains(&self.lane_nice) {
            return Err(bad("lane-nice", format!("{} is not in -20..=19", self.lane_nice)));
        }
        if self.queue_depth == 0 {
            return Err(bad("queue-depth", "must be at least 1"));
        }
        self.validate_control()?;
        self.validate_workload()?;
        self.clients.validate()?;
        // The lane configs must be valid too; report their field names.
        self.lane_config(self.leader, 0)
            .validate()
            .map_err(|e| bad(e.field, e.reason))
    }

    fn validate_control(&self) -> Result<(), ConfigError> {
        let p = &self.proto;
        for (field, v) in [
            ("heartbeat-ms", p.heartbeat_ms),
            ("election-timeout-ms", p.election_timeout_ms),
            ("transfer-timeout-ms", p.transfer_timeout_ms),
        ] {
            if !(0.01..=600_000.0).contains(&v) {
                return Err(bad(field, format!("{v} is not in 0.01..=600000 milliseconds")));
            }
        }
        if p.election_timeout_ms < 2.0 * p.heartbeat_ms {
            return Err(bad(
                "election-timeout-ms",
                format!(
                    "{} must be at least twice the heartbeat ({} ms), or followers give up on a live leader",
                    p.election_timeout_ms, p.heartbeat_ms
                ),
            ));
        }
        Ok(())
    }

    fn validate_workload(&self) -> Result<(), ConfigError> {
        let w = &self.workload;
        if !(0.0..=1.0).contains(&w.write_ratio) {
            return Err(bad(
                "write-ratio",
                format!("{} is not a fraction between 0 and 1", w.write_ratio),
            ));
        }
        if w.keys == 0 || w.keys > (1 << 40) {
            return Err(bad("keys", format!("{} is not in 1..=2^40", w.keys)));
        }
        if w.value_size < 8 || w.value_size > u16::MAX as usize {
            return Err(bad(
                "value-size",
                format!("{} is not in 8..=65535 bytes", w.value_size),
            ));
        }
        // Without client slots something must issue; with them, 0 is a pure server.
        let least = u32::from(!self.clients.enabled());
        if w.sessions < least || w.sessions > u16::MAX as u32 {
            return Err(bad(
                "sessions",
                format!("{} is not in {least}..=65535", w.sessions),
            ));
        }
        if w.trace_len == 0 {
            return Err(bad("trace-len", "must be at least 1"));
        }
        if w.ops_per_lane == Some(0) {
            return Err(bad("ops", "must be at least 1"));
        }
        if w.issue_batch == 0 {
            return Err(bad("issue-batch", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_parse() {
        assert_eq!("uniform".parse(), Ok(Distribution::Uniform));
        assert_eq!("zipf:0.99".parse(), Ok(Distribution::Zipf { exponent: 0.99 }));
        assert!("zipf:-1".parse::<Distribution>().is_err());
        assert!("pareto".parse::<Distribution>().is_err());
    }

    #[test]
    fn validation_names_the_field() {
        RunConfig::default().validate().unwrap();
        let mut c = RunConfig::default();
        c.workload.write_ratio = 1.5;
        assert_eq!(c.validate().unwrap_err().field, "write-ratio");
        let c = RunConfig {
            leader: 3,
            ..RunConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "leader");
        let mut c = RunConfig::default();
        c.proto.mtu = 99;
        assert_eq!(c.validate().unwrap_err().field, "mtu");
        let mut c = RunConfig::default();
        c.workload.value_size = 4;
        assert_eq!(c.validate().unwrap_err().field, "value-size");
    }
}
