//! The cluster file: a TOML description of a real cluster (its nodes and
//! their addresses, lanes, transport, protocol knobs, workload, timeouts)
//! that every `rzab node` process reads. A malformed or inconsistent file
//! gets an error naming the field.

use crate::config::{ConfigError, PollMode, ProtoConfig, RunConfig, WorkloadConfig, bad};
use rzab_proto::{BroadcastMode, MAX_NODES, NodeId};
use rzab_transport::udp::UdpConfig;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

/// One member: its id and the base address of its lanes (lane t uses port + t).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    pub id: NodeId,
    pub address: SocketAddr,
}

/// How datagrams travel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// Only "udp" for now.
    pub kind: String,
    /// Multicast group address and base port (lane t uses port + t).
    pub multicast_group: SocketAddrV4,
    /// The interface multicast is sent and joined on (default: the address
    /// of the node's own interface, from its `address`).
    pub multicast_interface: Option<Ipv4Addr>,
    /// Bytes asked for each socket buffer.
    pub socket_buffer: usize,
    /// UDP segmentation and receive offload.
    pub gso: bool,
    pub gro: bool,
}

impl Default for TransportSection {
    fn default() -> Self {
        TransportSection {
            kind: "udp".into(),
            multicast_group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 1), 17500),
            multicast_interface: None,
            socket_buffer: 16 << 20,
            gso: true,
            gro: true,
        }
    }
}

/// How long things may take.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunSection {
    /// Seconds the sessions run (a supervised node runs until told to drain).
    pub duration_s: f64,
    pub interval_s: f64,
    pub drain_timeout_s: f64,
    /// Seconds to wait for every member to answer the start-up handshake.
    pub handshake_timeout_s: f64,
    pub poll: PollMode,
}

impl Default for RunSection {
    fn default() -> Self {
        let r = RunConfig::default();
        RunSection {
            duration_s: r.duration_s,
            interval_s: r.interval_s,
            drain_timeout_s: r.drain_timeout_s,
            handshake_timeout_s: 60.0,
            poll: r.poll,
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub cluster_id: u32,
    #[serde(default)]
    pub leader: NodeId,
    #[serde(default = "one")]
    pub lanes: u8,
    #[serde(default)]
    pub transport: TransportSection,
    #[serde(default)]
    pub protocol: ProtoConfig,
    #[serde(default)]
    pub workload: WorkloadConfig,
    #[serde(default)]
    pub run: RunSection,
    pub nodes: Vec<NodeEntry>,
}

fn one() -> u8 {
    1
}

impl ClusterFile {
    /// Reads and checks a cluster file.
    pub fn load(path: &Path) -> Result<ClusterFile, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
        let file: ClusterFile = toml::from_str(&text).map_err(|e| {
            bad(
                "config",
                format!("{}: {}", path.display(), e.to_string().trim_end()),
            )
        })?;
        file.validate()?;
        Ok(file)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The file for `cfg` with these node addresses (what `bench --transport
    /// udp` writes for its children).
    pub fn from_run(cfg: &RunConfig, addresses: &[SocketAddr], transport: TransportSection) -> ClusterFile {
        ClusterFile {
            cluster_id: cfg.cluster_id,
            leader: cfg.leader,
            lanes: cfg.lanes,
            transport,
            protocol: cfg.proto.clone(),
            workload: cfg.workload.clone(),
            run: RunSection {
                duration_s: cfg.duration_s,
                interval_s: cfg.interval_s,
                drain_timeout_s: cfg.drain_timeout_s,
                handshake_timeout_s: RunSection::default().handshake_timeout_s,
                poll: cfg.poll,
            },
            nodes: addresses
                .iter()
                .enumerate()
                .map(|(i, &address)| NodeEntry {
                    id: i as NodeId,
                    address,
                })
                .collect(),
        }
    }

    /// The run configuration every node of the cluster shares.
    pub fn run_config(&self) -> RunConfig {
        RunConfig {
            cluster_id: self.cluster_id,
            nodes: self.nodes.len() as u8,
            lanes: self.lanes,
            leader: self.leader,
            duration_s: self.run.duration_s,
            interval_s: self.run.interval_s,
            drain_timeout_s: self.run.drain_timeout_s,
            poll: self.run.poll,
            proto: self.protocol.clone(),
            workload: self.workload.clone(),
            ..RunConfig::default()
        }
    }

    /// A hash of everything the nodes must agree on (the whole file), so
    /// the handshake can refuse a member started with another config.
    pub fn digest(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.to_toml().as_bytes())
    }

    /// The UDP endpoint config of `lane` at `node`.
    pub fn udp(&self, node: NodeId, lane: u8) -> UdpConfig {
        let members = self.nodes.iter().map(|n| (n.id, n.address)).collect();
        let mut c = UdpConfig::new(node, lane as usize, members);
        c.mtu = self.protocol.mtu;
        c.broadcast = self.protocol.broadcast;
        c.group = self.transport.multicast_group;
        let own = self.nodes.iter().find(|n| n.id == node).map(|n| n.address.ip());
        c.interface = match (self.transport.multicast_interface, own) {
            (Some(ip), _) => ip,
            (None, Some(std::net::IpAddr::V4(ip))) => ip,
            _ => Ipv4Addr::LOCALHOST,
        };
        c.socket_buffer = self.transport.socket_buffer;
        c.gso = self.transport.gso;
        c.gro = self.transport.gro;
        // Only followers receive broadcasts.
        c.join_group = node != self.leader;
        c
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() || self.nodes.len() > MAX_NODES {
            return Err(bad(
                "nodes",
                format!("{} nodes; want 1 to {MAX_NODES}", self.nodes.len()),
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let field = |f: &str| format!("nodes[{i}].{f}");
            if n.id as usize != i {
                return Err(bad(
                    &field("id"),
                    format!("is {}; ids must be 0, 1, 2, ... in order", n.id),
                ));
            }
            let SocketAddr::V4(a) = n.address else {
                return Err(bad(
                    &field("address"),
                    format!("{}: only IPv4 is supported", n.address),
                ));
            };
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(bad(
                    &field("address"),
                    format!("{a}: needs a concrete IP and port"),
                ));
            }
            if a.port() as usize + self.lanes as usize > 65536 {
                return Err(bad(
                    &field("address"),
                    format!("port {} + {} lanes exceeds 65535", a.port(), self.lanes),
                ));
            }
            for (j, m) in self.nodes[..i].iter().enumerate() {
                if m.address.ip() == n.address.ip()
                    && n.address.port().abs_diff(m.address.port()) < self.lanes as u16
                {
                    return Err(bad(
                        &field("address"),
                        format!(
                            "{} overlaps the lane ports of nodes[{j}] ({})",
                            n.address, m.address
                        ),
                    ));
                }
            }
        }
        if self.transport.kind != "udp" {
            return Err(bad(
                "transport.kind",
                format!("'{}' is not supported (only udp)", self.transport.kind),
            ));
        }
        let group = self.transport.multicast_group;
        if self.protocol.broadcast == BroadcastMode::Multicast && !group.ip().is_multicast() {
            return Err(bad(
                "transport.multicast_group",
                format!("{} is not a multicast address", group.ip()),
            ));
        }
        if self.run.handshake_timeout_s.is_nan() || self.run.handshake_timeout_s <= 0.0 {
            return Err(bad(
                "run.handshake_timeout_s",
                "must be a positive number of seconds",
            ));
        }
        self.run_config()
            .validate()
            .map_err(|e| bad(&file_key(&e.field), e.reason))
    }
}

/// Where a run-config field (named as its command-line flag) lives in the file.
fn file_key(field: &str) -> String {
    match field {
        "nodes" | "leader" | "lanes" => field.to_string(),
        "duration" | "interval" | "drain-timeout" => format!("run.{}_s", field.replace('-', "_")),
        "ops" => "workload.ops_per_lane".into(),
        "write-ratio" | "keys" | "value-size" | "sessions" | "trace-len" | "issue-batch" => {
            format!("workload.{}", field.replace('-', "_"))
        }
        _ => format!("protocol.{}", field.replace('-', "_")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
cluster_id = 7
lanes = 2

[protocol]
broadcast = "unicast"
prepare_credits = 8

[workload]
write_ratio = 0.5
keys = 1000
distribution = "zipf:0.9"

[[nodes]]
id = 0
address = "127.0.0.1:7000"

[[nodes]]
id = 1
address = "127.0.0.2:7000"

[[nodes]]
id = 2
address = "127.0.0.1:7002"
"#;

    fn parse(text: &str) -> Result<ClusterFile, ConfigError> {
        let f: ClusterFile = toml::from_str(text).map_err(|e| bad("config", e.to_string()))?;
        f.validate()?;
        Ok(f)
    }

    #[test]
    fn a_good_file_round_trips() {
        let f = parse(GOOD).unwrap();
        let r = f.run_config();
        assert_eq!(
            (r.nodes, r.lanes, r.proto.prepare_credits, r.workload.keys),
            (3, 2, 8, 1000)
        );
        assert_eq!(
            r.workload.distribution,
            crate::Distribution::Zipf { exponent: 0.9 }
        );
        assert_eq!(parse(&f.to_toml()).unwrap(), f);
        assert_eq!(f.udp(1, 1).lane, 1);
    }

    fn error_field(text: &str) -> String {
        parse(text).unwrap_err().field
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            error_field(&GOOD.replace("write_ratio = 0.5", "write_ratio = 5.0")),
            "workload.write_ratio"
        );
        assert_eq!(error_field(&GOOD.replace("id = 1", "id = 4")), "nodes[1].id");
        assert_eq!(
            error_field(&GOOD.replace("127.0.0.1:7002", "127.0.0.1:7001")),
            "nodes[2].address"
        );
        assert_eq!(
            error_field(&GOOD.replace("127.0.0.2:7000", "[::1]:7000")),
            "nodes[1].address"
        );
        assert_eq!(
            error_field(&GOOD.replace("cluster_id = 7", "cluster_id = 7\nleader = 5")),
            "leader"
        );
        assert_eq!(
            error_field(&GOOD.replace("prepare_credits = 8", "prepare_credits = 0")),
            "protocol.prepare_credits"
        );
        let typo = parse(&GOOD.replace("prepare_credits", "prepare_credit")).unwrap_err();
        assert!(typo.reason.contains("prepare_credit"), "{typo}");
        let not_mcast = GOOD.replace("broadcast = \"unicast\"", "").replace(
            "cluster_id = 7",
            "cluster_id = 7\n[transport]\nmulticast_group = \"10.0.0.1:9\"",
        );
        assert!(parse(&not_mcast).is_err());
    }
}
