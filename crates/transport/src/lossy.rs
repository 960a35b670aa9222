//! A wrapper that loses a fraction of the datagrams a lane receives, chosen
//! at random from a seed: the simulator's loss, for real runs (`bench --loss`).

use crate::{RecvBatch, SendBatch, Transport, TransportStats};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::io;
use std::task::Waker;
use std::time::Duration;

pub struct Lossy<T> {
    inner: T,
    loss: f64,
    rng: Xoshiro256PlusPlus,
    dropped: u64,
}

impl<T: Transport> Lossy<T> {
    /// Loses each received datagram with probability `loss` (0 passes all through).
    pub fn new(inner: T, loss: f64, seed: u64) -> Lossy<T> {
        Lossy {
            inner,
            loss: loss.clamp(0.0, 1.0),
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            dropped: 0,
        }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T> Lossy<T> {
    /// Loses datagrams `from..` of `batch` at random; returns its length.
    fn lose(&mut self, batch: &mut RecvBatch, from: usize) -> usize {
        if self.loss > 0.0 {
            // Keep the survivors in order at the front of the new datagrams.
            let mut kept = from;
            for i in from..batch.len {
                if self.rng.random_bool(self.loss) {
                    self.dropped += 1;
                } else {
                    batch.bufs.swap(kept, i);
                    kept += 1;
                }
            }
            batch.len = kept;
        }
        batch.len
    }
}

impl<T: Transport> Transport for Lossy<T> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn send(&mut self, batch: &SendBatch) -> io::Result<()> {
        self.inner.send(batch)
    }

    fn recv(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let before = batch.len;
        self.inner.recv(batch)?;
        Ok(self.lose(batch, before))
    }

    fn recv_readable(&mut self, batch: &mut RecvBatch, readable: u32) -> io::Result<(usize, u32)> {
        let before = batch.len;
        let (_, empty) = self.inner.recv_readable(batch, readable)?;
        Ok((self.lose(batch, before), empty))
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        self.inner.wait(timeout)
    }

    fn waker(&self) -> Waker {
        self.inner.waker()
    }

    fn wait_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.inner.wait_fds()
    }

    fn idle_polls(&self) -> u32 {
        self.inner.idle_polls()
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            dropped_injected: self.dropped,
            ..self.inner.stats()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::{Fabric, FabricConfig};
    use crate::{Dest, NodeSet};

    #[test]
    fn loses_about_the_fraction_asked_and_keeps_order() {
        let f = Fabric::new(FabricConfig {
            members: NodeSet::from_ids([0, 1]),
            lanes: 1,
            mtu: 16,
            queue_depth: 4096,
        });
        let mut a = f.endpoint(0, 0);
        let mut b = Lossy::new(f.endpoint(1, 0), 0.25, 7);
        let mut batch = SendBatch::new(64, 16);
        let mut got = Vec::new();
        for round in 0..64u32 {
            batch.clear();
            for i in 0..64u32 {
                let n = round * 64 + i;
                batch.next_buf().unwrap()[..4].copy_from_slice(&n.to_le_bytes());
                batch.push(Dest::Node(1), 4);
            }
            a.send(&batch).unwrap();
            let mut r = RecvBatch::new(64, 16);
            b.recv(&mut r).unwrap();
            got.extend(r.iter().map(|d| u32::from_le_bytes([d[0], d[1], d[2], d[3]])));
        }
        let lost = 4096 - got.len();
        assert!((800..1250).contains(&lost), "{lost} of 4096 lost at 25%");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "survivors stay in order");
        assert_eq!(b.stats().dropped_injected, lost as u64);
    }
}
