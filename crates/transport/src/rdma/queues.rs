//! A lane's verbs objects: its protection domain, a completion channel,
//! basic completion queues for sends and receives (not extended ones: their
//! polling is broken on rxe in rdma-core 44), and one UD queue pair
//! (extended, for the `ibv_wr_*` send API) taken to Ready To Send.

use super::device::Device;
use rdma_mummy_sys::{ibv_qp_attr, ibv_qp_attr_mask, ibv_qp_ex, ibv_qp_state, ibv_qp_to_qp_ex};
use sideway::ibverbs::completion::{BasicCompletionQueue, CompletionChannel, CompletionQueue};
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    ExtendedQueuePair, QueuePair, QueuePairAttribute, QueuePairAttributeMask, QueuePairState, QueuePairType,
    SendOperationFlags,
};
use std::io;
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::Arc;

/// The extended view of the queue pair, for the `ibv_wr_*` calls sideway
/// does not wrap (the UD address of a send).
pub struct QpEx(pub NonNull<ibv_qp_ex>);

// SAFETY: a verbs QP may be used from any thread; the endpoint that owns
// this pointer uses it from one thread at a time and keeps the QP alive.
unsafe impl Send for QpEx {}

pub struct Queues {
    pub pd: Arc<ProtectionDomain>,
    pub channel: Arc<CompletionChannel>,
    pub send_cq: Arc<BasicCompletionQueue>,
    pub recv_cq: Arc<BasicCompletionQueue>,
    pub qp: ExtendedQueuePair,
    pub qpx: QpEx,
    /// Inline bytes the device granted.
    pub max_inline: usize,
}

fn verbs_err(what: &str, e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("{what}: {e:?}"))
}

impl Queues {
    /// Creates the queues on `dev` and takes the QP to RTS with `qkey`.
    pub fn create(
        dev: &Device,
        send_depth: usize,
        recv_depth: usize,
        max_inline: usize,
        qkey: u32,
    ) -> io::Result<Queues> {
        let ctx = &dev.ctx;
        let pd = ctx
            .alloc_pd()
            .map_err(|e| verbs_err("allocating a protection domain", e))?;
        let channel = ctx
            .create_comp_channel()
            .map_err(|e| verbs_err("creating a completion channel", e))?;
        channel.set_nonblocking(true)?;
        let send_cq = ctx
            .create_cq_builder()
            .setup_cqe(send_depth as u32)
            .build()
            .map_err(|e| verbs_err("creating the send completion queue", e))?;
        let recv_cq = ctx
            .create_cq_builder()
            .setup_cqe(recv_depth as u32)
            .setup_comp_channel(&channel, 0)
            .build()
            .map_err(|e| verbs_err("creating the receive completion queue", e))?;
        // Ask for the inline size wanted; a device that refuses it gets
        // asked for half as much, down to none.
        let mut inline = max_inline;
        let qp = loop {
            let built = pd
                .create_qp_builder()
                .setup_qp_type(QueuePairType::UnreliableDatagram)
                .setup_max_send_wr(send_depth as u32)
                .setup_max_recv_wr(recv_depth as u32)
                .setup_max_send_sge(1)
                .setup_max_recv_sge(1)
                .setup_max_inline_data(inline as u32)
                .setup_send_cq(send_cq.clone())
                .setup_recv_cq(recv_cq.clone())
                // The default ops include RDMA ones, which UD refuses (EOPNOTSUPP).
                .setup_send_ops_flags(SendOperationFlags::Send | SendOperationFlags::SendWithImmediate)
                .build_ex();
            match built {
                Ok(qp) => break qp,
                Err(_) if inline > 0 => inline /= 2,
                Err(e) => return Err(verbs_err("creating the UD queue pair", e)),
            }
        };
        let mut queues = Queues {
            // SAFETY: `qp` is a live QP created as an extended one, so the
            // extended view exists and lives as long as it.
            qpx: QpEx(
                NonNull::new(unsafe { ibv_qp_to_qp_ex(qp.qp().as_ptr()) })
                    .ok_or_else(|| io::Error::other("the UD queue pair has no extended view"))?,
            ),
            pd,
            channel,
            send_cq,
            recv_cq,
            qp,
            max_inline: inline,
        };
        queues.max_inline = queues.granted_inline().unwrap_or(inline);
        queues.ready(dev.port, qkey)?;
        Ok(queues)
    }

    fn granted_inline(&self) -> Option<usize> {
        let (_, init) = self.qp.query(QueuePairAttributeMask::Capabilities).ok()?;
        usize::try_from(init.max_inline_data()).ok()
    }

    /// RESET -> INIT (port, partition key 0, QKey) -> RTR -> RTS.
    fn ready(&mut self, port: u8, qkey: u32) -> io::Result<()> {
        // SAFETY: ibv_qp_attr is plain C data (integers, and unions of
        // integers and byte arrays) for which all zeroes is valid.
        let mut attr: ibv_qp_attr = unsafe { MaybeUninit::zeroed().assume_init() };
        attr.qp_state = ibv_qp_state::IBV_QPS_INIT;
        attr.pkey_index = 0;
        attr.port_num = port;
        attr.qkey = qkey;
        let mask = ibv_qp_attr_mask::IBV_QP_STATE
            | ibv_qp_attr_mask::IBV_QP_PKEY_INDEX
            | ibv_qp_attr_mask::IBV_QP_PORT
            | ibv_qp_attr_mask::IBV_QP_QKEY;
        // sideway has no QKey setter: a raw attribute passes through `from`.
        let init = QueuePairAttribute::from(&attr, mask.0 as i32);
        self.qp
            .modify(&init)
            .map_err(|e| verbs_err("moving the UD queue pair to INIT", e))?;
        let mut rtr = QueuePairAttribute::new();
        rtr.setup_state(QueuePairState::ReadyToReceive);
        self.qp
            .modify(&rtr)
            .map_err(|e| verbs_err("moving the UD queue pair to RTR", e))?;
        let mut rts = QueuePairAttribute::new();
        rts.setup_state(QueuePairState::ReadyToSend).setup_sq_psn(0);
        self.qp
            .modify(&rts)
            .map_err(|e| verbs_err("moving the UD queue pair to RTS", e))
    }

    pub fn qp_number(&self) -> u32 {
        self.qp.qp_number()
    }

    /// The raw QP, for the calls sideway does not wrap.
    pub fn raw_qp(&self) -> *mut rdma_mummy_sys::ibv_qp {
        // SAFETY: only the pointer is taken; it lives as long as `self.qp`.
        unsafe { self.qp.qp().as_ptr() }
    }

    pub fn raw_send_cq(&self) -> *mut rdma_mummy_sys::ibv_cq {
        // SAFETY: only the pointer is taken; it lives as long as the CQ.
        unsafe { self.send_cq.cq().as_ptr() }
    }

    pub fn raw_recv_cq(&self) -> *mut rdma_mummy_sys::ibv_cq {
        // SAFETY: only the pointer is taken; it lives as long as the CQ.
        unsafe { self.recv_cq.cq().as_ptr() }
    }
}
