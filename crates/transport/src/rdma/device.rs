//! Opening the RDMA device: finding it by name, checking its port, and
//! choosing the GID to send from. Every failure is one line a person can
//! act on, and "no RDMA here" ends with the advice to use UDP.

use super::USE_UDP;
use super::grh::{Gid, ipv4_mapped};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::DeviceContext;
use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// `ibv_port_state::IBV_PORT_ACTIVE`.
const PORT_ACTIVE: u32 = 4;
/// `IBV_LINK_LAYER_ETHERNET` (RoCE); 1 and 0 mean InfiniBand.
const LINK_LAYER_ETHERNET: u8 = 2;
/// `ibv_query_gid_type`'s answer for a RoCE v2 GID (sysfs "RoCE v2").
const GID_TYPE_ROCE_V2: u32 = 1;

/// An open device port and the GID this lane sends from.
pub struct Device {
    pub ctx: Arc<DeviceContext>,
    pub name: String,
    pub port: u8,
    pub gid_index: u8,
    pub gid: Gid,
    pub lid: u16,
    /// The port's active MTU in bytes.
    pub active_mtu: usize,
    /// Ethernet link layer (RoCE) rather than InfiniBand.
    pub roce: bool,
    /// Largest queue and completion-queue depths the device allows.
    pub max_qp_wr: usize,
    pub max_cqe: usize,
}

fn no_rdma(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("{what}; {USE_UDP}"))
}

/// The device list, or why there is none.
fn list() -> io::Result<DeviceList> {
    let list = DeviceList::new().map_err(|e| {
        let errno = match e.0 {
            sideway::ibverbs::device::GetDeviceListErrorKind::Ibverbs(io) => io.raw_os_error(),
            #[allow(unreachable_patterns)]
            _ => None,
        };
        match errno {
            Some(libc::EOPNOTSUPP) => no_rdma(
                "RDMA libraries not found (libibverbs.so.1 from rdma-core; Debian: apt-get install rdma-core ibverbs-providers)"
                    .into(),
            ),
            Some(libc::ENOSYS) => no_rdma("no RDMA device (this kernel has no RDMA support loaded)".into()),
            e => no_rdma(format!(
                "cannot list RDMA devices ({})",
                io::Error::from_raw_os_error(e.unwrap_or(libc::EIO))
            )),
        }
    })?;
    if list.is_empty() {
        return Err(no_rdma("no RDMA device found".into()));
    }
    Ok(list)
}

/// The names of the RDMA devices here.
pub fn names() -> io::Result<Vec<String>> {
    Ok(list()?.iter().map(|d| d.name()).collect())
}

/// Opens `name`'s `port` and picks the GID (`gid_index`, or the one of `ip`).
pub fn open(name: &str, port: u8, gid_index: Option<u8>, ip: Ipv4Addr) -> io::Result<Device> {
    let devices = list()?;
    let found = devices.iter().find(|d| d.name() == name).ok_or_else(|| {
        let all: Vec<String> = devices.iter().map(|d| d.name()).collect();
        no_rdma(format!(
            "no RDMA device named '{name}' (found: {})",
            all.join(", ")
        ))
    })?;
    let ctx = found
        .open()
        .map_err(|e| io::Error::other(format!("cannot open RDMA device {name}: {e:?}")))?;
    let dev = ctx
        .query_device()
        .map_err(|e| io::Error::other(format!("cannot query RDMA device {name}: {e:?}")))?;
    let attr = ctx
        .query_port(port)
        .map_err(|_| io::Error::other(format!("RDMA device {name} has no port {port}")))?
        .attr;
    if attr.state != PORT_ACTIVE {
        return Err(io::Error::other(format!(
            "port {port} of RDMA device {name} is not active (state {}; on InfiniBand, is a subnet manager running?)",
            attr.state
        )));
    }
    let roce = attr.link_layer == LINK_LAYER_ETHERNET;
    let (gid_index, gid) = match gid_index {
        Some(i) => (i, query_gid(&ctx, name, port, i)?),
        None => pick_gid(&ctx, name, port, attr.gid_tbl_len, roce, ip)?,
    };
    Ok(Device {
        ctx,
        name: name.to_string(),
        port,
        gid_index,
        gid,
        lid: attr.lid,
        active_mtu: mtu_bytes(attr.active_mtu),
        roce,
        max_qp_wr: usize::try_from(dev.max_qp_wr()).unwrap_or(0),
        max_cqe: usize::try_from(dev.max_cqe()).unwrap_or(0),
    })
}

fn query_gid(ctx: &DeviceContext, name: &str, port: u8, index: u8) -> io::Result<Gid> {
    let gid = ctx
        .query_gid(port, u32::from(index))
        .map_err(|_| io::Error::other(format!("RDMA device {name} port {port} has no GID index {index}")))?;
    if gid.is_zero() {
        return Err(io::Error::other(format!(
            "GID index {index} of RDMA device {name} port {port} is empty (see ibv_devinfo -v)"
        )));
    }
    Ok(gid.raw)
}

/// On InfiniBand entry 0; on RoCE the RoCE v2 (else v1) GID of `ip`.
fn pick_gid(
    ctx: &DeviceContext,
    name: &str,
    port: u8,
    len: i32,
    roce: bool,
    ip: Ipv4Addr,
) -> io::Result<(u8, Gid)> {
    if !roce {
        return Ok((0, query_gid(ctx, name, port, 0)?));
    }
    let want = ipv4_mapped(ip.octets());
    let mut v1 = None;
    for index in 0..u8::try_from(len.clamp(0, 255)).unwrap_or(0) {
        let Ok(gid) = ctx.query_gid(port, u32::from(index)) else {
            continue;
        };
        if gid.raw != want {
            continue;
        }
        if ctx.query_gid_type(port, u32::from(index)).ok() == Some(GID_TYPE_ROCE_V2) {
            return Ok((index, want));
        }
        v1.get_or_insert((index, want));
    }
    v1.ok_or_else(|| {
        io::Error::other(format!(
            "RDMA device {name} port {port} has no GID for {ip} (is {ip} on its network interface? or set rdma.gid_index)"
        ))
    })
}

/// `ibv_mtu` (1 = 256 ... 5 = 4096) in bytes.
fn mtu_bytes(mtu: u32) -> usize {
    match mtu {
        1..=5 => 128 << mtu,
        _ => 256,
    }
}
