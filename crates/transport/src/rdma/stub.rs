//! The RDMA endpoint of a build without the `rdma` feature: it cannot be
//! opened, and says how to get one (or to use UDP).

use super::{PeerAddress, RdmaConfig, RdmaInfo, USE_UDP};
use crate::{NodeId, RecvBatch, SendBatch, Transport, TransportStats};
use std::convert::Infallible;
use std::io;
use std::task::Waker;
use std::time::Duration;

/// Never constructed: opening fails in a build without RDMA.
pub struct RdmaEndpoint {
    never: Infallible,
}

pub(super) fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("this rzab was built without RDMA (rebuild with `--features rdma`); {USE_UDP}"),
    )
}

impl RdmaEndpoint {
    pub fn open(_cfg: &RdmaConfig) -> io::Result<RdmaEndpoint> {
        Err(unsupported())
    }

    pub fn new(_cfg: &RdmaConfig) -> io::Result<RdmaEndpoint> {
        Err(unsupported())
    }

    pub fn bootstrap(&mut self, _progress: &mut dyn FnMut(&[NodeId])) -> io::Result<()> {
        match self.never {}
    }

    pub fn address(&self) -> PeerAddress {
        match self.never {}
    }

    pub fn set_peer(&mut self, _node: NodeId, _addr: PeerAddress) -> io::Result<()> {
        match self.never {}
    }

    pub fn info(&self) -> RdmaInfo {
        match self.never {}
    }
}

impl Transport for RdmaEndpoint {
    fn mtu(&self) -> usize {
        match self.never {}
    }

    fn send(&mut self, _batch: &SendBatch) -> io::Result<()> {
        match self.never {}
    }

    fn recv(&mut self, _batch: &mut RecvBatch) -> io::Result<usize> {
        match self.never {}
    }

    fn wait(&mut self, _timeout: Duration) -> io::Result<()> {
        match self.never {}
    }

    fn waker(&self) -> Waker {
        match self.never {}
    }

    fn stats(&self) -> TransportStats {
        match self.never {}
    }
}
