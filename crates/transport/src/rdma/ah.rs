//! Address handles (raw `ibv_create_ah`: sideway has no wrapper), always
//! created in the protection domain of the queue pair that sends with them.

use super::device::Device;
use super::route::PeerAddress;
use rdma_mummy_sys::{ibv_ah, ibv_ah_attr, ibv_create_ah, ibv_destroy_ah, ibv_gid, ibv_global_route};
use sideway::ibverbs::protection_domain::ProtectionDomain;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

/// Hop limit of routed (GRH) sends.
const HOP_LIMIT: u8 = 64;

pub struct Ah {
    ah: NonNull<ibv_ah>,
    /// The PD outlives the handle.
    _pd: Arc<ProtectionDomain>,
}

// SAFETY: an address handle is immutable once created and may be used from
// any thread; the owner destroys it once, on drop.
unsafe impl Send for Ah {}

impl Ah {
    /// A handle from prepared attributes (a peer's, or a multicast group's
    /// from rdma_cm).
    pub fn new(pd: &Arc<ProtectionDomain>, attr: &ibv_ah_attr) -> io::Result<Ah> {
        let mut attr = *attr;
        // SAFETY: `pd` is a live PD and `attr` a filled attribute struct that
        // lives across the call (the library copies it).
        let ah = unsafe { ibv_create_ah(pd.pd().as_ptr(), &mut attr) };
        let ah = NonNull::new(ah).ok_or_else(io::Error::last_os_error)?;
        Ok(Ah { ah, _pd: pd.clone() })
    }

    /// A handle that reaches `peer` from `dev`'s port: by GID on RoCE
    /// (routed, with a GRH), by LID on InfiniBand (one subnet).
    pub fn to_peer(pd: &Arc<ProtectionDomain>, dev: &Device, peer: &PeerAddress) -> io::Result<Ah> {
        let attr = ibv_ah_attr {
            grh: ibv_global_route {
                dgid: ibv_gid { raw: peer.gid },
                flow_label: 0,
                sgid_index: dev.gid_index,
                hop_limit: HOP_LIMIT,
                traffic_class: 0,
            },
            dlid: if dev.roce { 0 } else { peer.lid },
            sl: 0,
            src_path_bits: 0,
            static_rate: 0,
            is_global: u8::from(dev.roce),
            port_num: dev.port,
        };
        Ah::new(pd, &attr)
    }

    pub fn raw(&self) -> *mut ibv_ah {
        self.ah.as_ptr()
    }
}

impl Drop for Ah {
    fn drop(&mut self) {
        // SAFETY: the handle was created by ibv_create_ah and is destroyed
        // once; no send using it is posted after the owner drops it.
        let _ = unsafe { ibv_destroy_ah(self.ah.as_ptr()) };
    }
}
