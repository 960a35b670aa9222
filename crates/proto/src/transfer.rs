//! Reliable bulk transfer over datagrams for the control plane (held
//! entries to a candidate, history or snapshot to a follower or a joining
//! node): items are encoded into datagrams up front, sent a window at a time,
//! acknowledged cumulatively, and sent again from the first unacknowledged
//! chunk after a timeout.

use crate::{OwnedEntry, OwnedItem, Span, Time};
use rzab_wire::{Encoder, Header, Item, Items, Kind, NodeId, SessionItem};

/// What a transfer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Entry(OwnedEntry),
    Item(OwnedItem),
    Session(SessionItem),
}

pub struct Outgoing {
    pub to: NodeId,
    pub stream: u32,
    chunks: Vec<Vec<u8>>,
    acked: u32,
    next: u32,
    /// When the first unacknowledged chunk was last sent.
    sent_at: Time,
}

impl Outgoing {
    /// Encodes `items` into chunks of at most `mtu` bytes (at least one, the
    /// last flagged).
    pub fn new<'a>(
        header: Header,
        to: NodeId,
        stream: u32,
        items: impl Iterator<Item = Item<'a>>,
        mtu: usize,
    ) -> Outgoing {
        let mut chunks = Vec::new();
        let mut items = items.peekable();
        loop {
            let mut buf = vec![0u8; mtu];
            let Ok(mut e) = Encoder::transfer(&mut buf, header, stream, chunks.len() as u32, false) else {
                break;
            };
            while let Some(item) = items.peek() {
                if !e.push_item(item) {
                    break;
                }
                items.next();
            }
            let stuck = e.is_empty() && items.peek().is_some();
            if items.peek().is_none() || stuck {
                // Last chunk (an item too big for one datagram ends the stream
                // early rather than loop: the receiver then lacks it).
                e.set_last();
            }
            let len = e.finish();
            buf.truncate(len);
            chunks.push(buf);
            if items.peek().is_none() || stuck {
                break;
            }
        }
        Outgoing {
            to,
            stream,
            chunks,
            acked: 0,
            next: 0,
            sent_at: Time::ZERO,
        }
    }

    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }

    pub fn done(&self) -> bool {
        self.acked as usize >= self.chunks.len()
    }

    /// The next chunk to send now, within `window` unacknowledged chunks;
    /// after `rto` without progress, from the first unacknowledged again.
    pub fn poll(&mut self, now: Time, rto: Span, window: u32) -> Option<&[u8]> {
        if self.done() {
            return None;
        }
        if self.next > self.acked && now >= self.sent_at + rto {
            self.next = self.acked;
        }
        let n = self.next;
        if (n as usize) < self.chunks.len() && n < self.acked + window {
            if n == self.acked {
                self.sent_at = now;
            }
            self.next += 1;
            return Some(&self.chunks[n as usize]);
        }
        None
    }

    pub fn on_ack(&mut self, chunks: u32, now: Time) {
        let chunks = chunks.min(self.chunks.len() as u32);
        if chunks > self.acked {
            self.acked = chunks;
            self.next = self.next.max(chunks);
            self.sent_at = now;
        }
    }

    pub fn deadline(&self, rto: Span) -> Option<Time> {
        (!self.done()).then_some(self.sent_at + rto)
    }
}

/// The receiving end: takes chunks in order, acknowledges cumulatively.
#[derive(Debug, Default)]
pub struct Incoming {
    next: u32,
    done: bool,
    pub items: Vec<Received>,
}

impl Incoming {
    /// Takes chunk `chunk` if it is the next one. Returns whether it was.
    pub fn on_chunk(&mut self, chunk: u32, last: bool, items: Items<'_>) -> bool {
        if self.done || chunk != self.next {
            return false;
        }
        for item in items {
            self.items.push(match item {
                Item::History(h) => Received::Entry(OwnedEntry::from_item(&h)),
                Item::Snapshot(s) => Received::Item(OwnedItem {
                    key: s.key,
                    zxid: s.zxid,
                    value: s.value.to_vec(),
                }),
                Item::Session(s) => Received::Session(s),
            });
        }
        self.next += 1;
        self.done = last;
        true
    }

    /// Chunks received so far (what to acknowledge).
    pub fn received(&self) -> u32 {
        self.next
    }

    pub fn done(&self) -> bool {
        self.done
    }
}

/// The header of a transfer chunk.
pub fn chunk_header(cluster_id: u32, epoch: u32, sender: NodeId) -> Header {
    Header {
        kind: Kind::Transfer,
        cluster_id,
        epoch,
        sender,
        lane: rzab_wire::CONTROL_LANE,
        count: 0,
        seq: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rzab_wire::{Body, ControlMsg, Op, Zxid, decode};

    fn entry(i: u32) -> OwnedEntry {
        OwnedEntry {
            zxid: Zxid::new(1, i),
            lane: 0,
            origin: 1,
            op: Op::Put,
            session: i,
            seq: 1,
            key: i as u64,
            value: vec![7; 20],
        }
    }

    fn deliver(inc: &mut Incoming, bytes: &[u8]) -> bool {
        let m = decode(bytes).unwrap();
        let Body::Control(ControlMsg::Transfer {
            chunk, last, items, ..
        }) = m.body
        else {
            panic!()
        };
        inc.on_chunk(chunk, last, items)
    }

    #[test]
    fn a_lossy_transfer_completes_in_order() {
        let entries: Vec<OwnedEntry> = (1..=100).map(entry).collect();
        let h = chunk_header(1, 2, 0);
        let mut out = Outgoing::new(h, 1, 9, entries.iter().map(|e| e.item()), 256);
        assert!(out.chunks() > 10);
        let mut inc = Incoming::default();
        let rto = Span(100);
        let mut now = Time(0);
        let mut rng = 12345u64;
        while !out.done() {
            now = now + Span(10);
            while let Some(c) = out.poll(now, rto, 4) {
                // A third of the datagrams are lost (pseudo-randomly).
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if !(rng >> 33).is_multiple_of(3) {
                    let c = c.to_vec();
                    deliver(&mut inc, &c);
                }
            }
            out.on_ack(inc.received(), now);
            assert!(now < Time(1_000_000), "the transfer must finish");
        }
        assert!(inc.done());
        let got: Vec<OwnedEntry> = inc
            .items
            .into_iter()
            .map(|r| match r {
                Received::Entry(e) => e,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, entries);
    }

    #[test]
    fn an_empty_transfer_is_one_last_chunk() {
        let mut out = Outgoing::new(chunk_header(1, 2, 0), 1, 3, std::iter::empty(), 256);
        assert_eq!(out.chunks(), 1);
        let mut inc = Incoming::default();
        let c = out.poll(Time(0), Span(10), 4).unwrap().to_vec();
        assert!(deliver(&mut inc, &c));
        assert!(inc.done() && inc.items.is_empty());
        assert!(!deliver(&mut inc, &c), "a duplicate is ignored");
    }
}
