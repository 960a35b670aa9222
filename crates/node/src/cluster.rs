//! The cluster file: a TOML description of a real cluster (its nodes and
//! their addresses, lanes, transport, protocol knobs, workload, timeouts)
//! that every `rzab node` process reads. A malformed or inconsistent file
//! gets an error naming the field.

use crate::config::{ConfigError, PollMode, ProtoConfig, RunConfig, WorkloadConfig, bad};
use rzab_proto::{BroadcastMode, MAX_NODES, NodeId};
use rzab_transport::rdma::{Credits, RDMA_UDP_QKEY, RdmaConfig};
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
    /// With `transport.kind = "rdma"`: this node's device, if not `rdma.device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_device: Option<String>,
    /// Where `rzab serve` listens for clients (default: this address's IP,
    /// the port after the control port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<SocketAddr>,
}

/// How datagrams travel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSection {
    /// "udp", or "rdma" (InfiniBand or RoCE UD; see `[rdma]`).
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

/// The RDMA transport's settings (`transport.kind = "rdma"`). Lane t of a
/// node bootstraps over UDP on its address's port + t and joins multicast
/// group `transport.multicast_group`'s address + t (its port is not used).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RdmaSection {
    /// The device as `ibv_devinfo` names it, for every node (a node's
    /// `rdma_device` overrides it); empty: the device that carries each
    /// node's address.
    pub device: String,
    /// The device port (from 1), used with a named device.
    pub port: u8,
    /// The GID table entry; absent: on RoCE the RoCE v2 GID of the node's
    /// IPv4 address, on InfiniBand entry 0.
    pub gid_index: Option<u8>,
    pub qkey: u32,
    /// Receive buffers per lane; 0 sizes them from the credits.
    pub recv_depth: usize,
    /// Send queue depth (a power of two, at least 128).
    pub send_depth: usize,
    /// One send in this many is signaled.
    pub signal_every: usize,
    /// Inline bytes asked of the device.
    pub max_inline: usize,
}

impl Default for RdmaSection {
    fn default() -> Self {
        let d = RdmaConfig::new(0, 0, Vec::new());
        RdmaSection {
            device: String::new(),
            port: d.port,
            gid_index: d.gid_index,
            qkey: RDMA_UDP_QKEY,
            recv_depth: d.recv_depth,
            send_depth: d.send_depth,
            signal_every: d.signal_every,
            max_inline: d.max_inline,
        }
    }
}

impl RdmaSection {
    fn is_default(&self) -> bool {
        *self == RdmaSection::default()
    }
}

/// Settings of this process only, from its command line: not part of the
/// file, so not of the digest the members compare.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalOverrides {
    pub rdma_device: Option<String>,
    pub rdma_port: Option<u8>,
    pub rdma_gid_index: Option<u8>,
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
    #[serde(default, skip_serializing_if = "RdmaSection::is_default")]
    pub rdma: RdmaSection,
    #[serde(default)]
    pub protocol: ProtoConfig,
    #[serde(default)]
    pub workload: WorkloadConfig,
    #[serde(default)]
    pub run: RunSection,
    /// External clients (`rzab serve`).
    #[serde(default)]
    pub client: crate::config::ClientsConfig,
    pub nodes: Vec<NodeEntry>,
    #[serde(skip)]
    pub local: LocalOverrides,
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
            rdma: RdmaSection::default(),
            protocol: cfg.proto.clone(),
            workload: cfg.workload.clone(),
            run: RunSection {
                duration_s: cfg.duration_s,
                interval_s: cfg.interval_s,
                drain_timeout_s: cfg.drain_timeout_s,
                handshake_timeout_s: RunSection::default().handshake_timeout_s,
                poll: cfg.poll,
            },
            client: cfg.clients.clone(),
            nodes: addresses
                .iter()
                .enumerate()
                .map(|(i, &address)| NodeEntry {
                    id: i as NodeId,
                    address,
                    rdma_device: None,
                    client: None,
                })
                .collect(),
            local: LocalOverrides::default(),
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
            clients: self.client.clone(),
            ..RunConfig::default()
        }
    }

    /// Where node `id` serves clients.
    pub fn client_addr(&self, id: NodeId) -> Option<SocketAddr> {
        let n = self.nodes.get(id as usize)?;
        Some(n.client.unwrap_or_else(|| {
            let port = n.address.port().saturating_add(self.lanes as u16 + 1);
            SocketAddr::new(n.address.ip(), port)
        }))
    }

    /// Every node's client address.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        (0..self.nodes.len() as NodeId)
            .filter_map(|i| self.client_addr(i))
            .collect()
    }

    /// With clients on, no client port may meet another port of the file.
    fn validate_client_ports(&self) -> Result<(), ConfigError> {
        if !self.client.enabled() {
            return Ok(());
        }
        let mut used = Vec::new();
        for n in &self.nodes {
            for p in 0..=self.lanes as u16 {
                used.push(SocketAddr::new(
                    n.address.ip(),
                    n.address.port().saturating_add(p),
                ));
            }
        }
        for (i, c) in self.client_addrs().into_iter().enumerate() {
            if c.port() == 0 || used.contains(&c) {
                return Err(bad(
                    &format!("nodes[{i}].client"),
                    format!("{c} is taken by a lane or control port (or is port 0); set nodes[{i}].client"),
                ));
            }
            used.push(c);
        }
        Ok(())
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
        // Any node may lead after a failover, so every node receives
        // broadcasts (the leader drops its own, heard back).
        c.join_group = true;
        c
    }

    /// The control plane's endpoint at `node`: UDP on port `base + lanes`
    /// (over RDMA too: control traffic is light), unicast only.
    pub fn control_udp(&self, node: NodeId) -> UdpConfig {
        let mut c = self.udp(node, self.lanes);
        c.broadcast = rzab_proto::BroadcastMode::Unicast;
        c.join_group = false;
        c.gso = false;
        c.gro = false;
        c.socket_buffer = c.socket_buffer.min(4 << 20);
        c
    }

    /// The RDMA endpoint config of `lane` at `node` (with this process's
    /// command-line overrides).
    pub fn rdma(&self, node: NodeId, lane: u8) -> RdmaConfig {
        let members = self.nodes.iter().map(|n| (n.id, n.address)).collect();
        let mut c = RdmaConfig::new(node, lane as usize, members);
        let r = &self.rdma;
        let entry = self.nodes.iter().find(|n| n.id == node);
        let device = (self.local.rdma_device.clone())
            .or_else(|| entry.and_then(|n| n.rdma_device.clone()))
            .unwrap_or_else(|| r.device.clone());
        c.cluster_id = self.cluster_id;
        c.device = (!device.is_empty()).then_some(device);
        c.port = self.local.rdma_port.unwrap_or(r.port);
        c.gid_index = self.local.rdma_gid_index.or(r.gid_index);
        c.qkey = r.qkey;
        c.mtu = self.protocol.mtu;
        c.broadcast = self.protocol.broadcast;
        c.group = *self.transport.multicast_group.ip();
        c.join_group = true;
        c.credits = Credits {
            prepare: self.protocol.prepare_credits,
            commit: self.protocol.commit_credits,
            write: self.protocol.write_credits,
        };
        c.recv_depth = r.recv_depth;
        c.send_depth = r.send_depth;
        c.signal_every = r.signal_every;
        c.max_inline = r.max_inline;
        c.bootstrap_timeout = std::time::Duration::from_secs_f64(self.run.handshake_timeout_s);
        c
    }

    fn validate_rdma(&self) -> Result<(), ConfigError> {
        let r = &self.rdma;
        if r.port == 0 {
            return Err(bad("rdma.port", "ports count from 1"));
        }
        if r.qkey & 0x8000_0000 != 0 {
            return Err(bad(
                "rdma.qkey",
                format!("{:#x} has the high bit set (a controlled QKey)", r.qkey),
            ));
        }
        let min = rzab_transport::rdma::config::MIN_SEND_DEPTH;
        if r.send_depth < min || !r.send_depth.is_power_of_two() {
            return Err(bad(
                "rdma.send_depth",
                format!("{} must be a power of two, at least {min}", r.send_depth),
            ));
        }
        if r.signal_every == 0 || r.signal_every > r.send_depth / 2 {
            return Err(bad(
                "rdma.signal_every",
                format!(
                    "{} must be in 1..={} (half of send_depth)",
                    r.signal_every,
                    r.send_depth / 2
                ),
            ));
        }
        let max = rzab_transport::rdma::config::MAX_UD_MTU;
        if self.protocol.mtu > max {
            return Err(bad(
                "protocol.mtu",
                format!("{} exceeds RDMA's largest MTU, {max}", self.protocol.mtu),
            ));
        }
        if let Some(i) = self
            .nodes
            .iter()
            .position(|n| n.rdma_device.as_deref() == Some(""))
        {
            return Err(bad(&format!("nodes[{i}].rdma_device"), "is empty"));
        }
        Ok(())
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
            // Each lane's port, then the control plane's.
            let ports = self.lanes as usize + 1;
            if a.port() as usize + ports > 65536 {
                return Err(bad(
                    &field("address"),
                    format!("port {} + {} lanes + control exceeds 65535", a.port(), self.lanes),
                ));
            }
            for (j, m) in self.nodes[..i].iter().enumerate() {
                if m.address.ip() == n.address.ip()
                    && (n.address.port().abs_diff(m.address.port()) as usize) < ports
                {
                    return Err(bad(
                        &field("address"),
                        format!(
                            "{} overlaps the lane and control ports of nodes[{j}] ({})",
                            n.address, m.address
                        ),
                    ));
                }
            }
        }
        match self.transport.kind.as_str() {
            "udp" => {}
            "rdma" => self.validate_rdma()?,
            other => {
                return Err(bad(
                    "transport.kind",
                    format!("'{other}' is not supported (udp or rdma)"),
                ));
            }
        }
        let group = self.transport.multicast_group;
        if self.protocol.broadcast == BroadcastMode::Multicast && !group.ip().is_multicast() {
            return Err(bad(
                "transport.multicast_group",
                format!("{} is not a multicast address", group.ip()),
            ));
        }
        self.validate_client_ports()?;
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
        f if f.starts_with("client.") => f.replace('-', "_"),
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
address = "127.0.0.1:7003"
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
            error_field(&GOOD.replace("127.0.0.1:7003", "127.0.0.1:7002")),
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

    fn rdma_file() -> String {
        GOOD.replace(
            "lanes = 2\n",
            "lanes = 2\n\n[transport]\nkind = \"rdma\"\n\n[rdma]\ndevice = \"mlx5_0\"\ngid_index = 3\n",
        )
        .replacen(
            "address = \"127.0.0.2:7000\"",
            "address = \"127.0.0.2:7000\"\nrdma_device = \"mlx5_1\"",
            1,
        )
    }

    #[test]
    fn an_rdma_file_names_each_nodes_device_and_overrides_stay_local() {
        let mut f = parse(&rdma_file()).unwrap();
        let c = f.rdma(1, 1);
        assert_eq!(
            (c.device.as_deref(), c.gid_index, c.lane, c.port, c.cluster_id),
            (Some("mlx5_1"), Some(3), 1, 1, 7)
        );
        assert_eq!(f.rdma(0, 0).device.as_deref(), Some("mlx5_0"));
        assert_eq!((c.credits.prepare, c.broadcast), (8, BroadcastMode::Unicast));
        assert!(c.layout().is_ok());
        assert_eq!(parse(&f.to_toml()).unwrap(), f);
        let digest = f.digest();
        f.local.rdma_device = Some("rxe0".into());
        f.local.rdma_gid_index = Some(1);
        assert_eq!(f.rdma(1, 0).device.as_deref(), Some("rxe0"));
        assert_eq!(f.rdma(1, 0).gid_index, Some(1));
        assert_eq!(f.digest(), digest, "command-line overrides are not in the digest");
        let udp = parse(GOOD).unwrap();
        assert!(!udp.to_toml().contains("[rdma]"), "a UDP file stays as it was");
        assert_eq!(udp.rdma(0, 0).device, None, "no name: the device of the address");
    }

    #[test]
    fn rdma_errors_name_the_field() {
        let f = rdma_file();
        let with = |extra: &str| f.replace("gid_index = 3\n", &format!("gid_index = 3\n{extra}\n"));
        assert_eq!(error_field(&with("send_depth = 100")), "rdma.send_depth");
        assert_eq!(error_field(&with("signal_every = 0")), "rdma.signal_every");
        assert_eq!(error_field(&with("port = 0")), "rdma.port");
        assert_eq!(error_field(&with("qkey = 2147483649")), "rdma.qkey");
        assert_eq!(error_field(&f.replace("mlx5_1", "")), "nodes[1].rdma_device");
        assert_eq!(error_field(&f.replace("\"rdma\"", "\"verbs\"")), "transport.kind");
        assert_eq!(
            error_field(&f.replace("prepare_credits = 8", "prepare_credits = 8\nmtu = 9000")),
            "protocol.mtu"
        );
        assert!(
            parse(&with("devices = 1"))
                .unwrap_err()
                .reason
                .contains("devices")
        );
    }
}
