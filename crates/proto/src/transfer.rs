//! Reliable bulk transfer over datagrams for the control plane (held
//! entries to a candidate, history or snapshot to a follower or a joining
//! node): items are encoded into datagrams as the window opens (a large
//! snapshot is never encoded whole), sent a window at a time, acknowledged
//! cumulatively, and sent again from the first unacknowledged chunk after a
//! timeout.

use crate::{OwnedEntry, OwnedItem, Span, Time};
use rzab_wire::{Encoder, Header, Item, Items, Kind, NodeId, SessionItem};
use std::collections::VecDeque;
use std::sync::Arc;

/// What a transfer carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Entry(OwnedEntry),
    Item(OwnedItem),
    Session(SessionItem),
}

/// What a transfer sends, in this order: history entries, snapshot items,
/// session items, then a tail of entries. Shared (a snapshot may go to
/// several nodes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload {
    pub entries: Vec<OwnedEntry>,
    pub items: Vec<OwnedItem>,
    pub sessions: Vec<SessionItem>,
    pub tail: Vec<OwnedEntry>,
}

impl Payload {
    pub fn of_entries(entries: Vec<OwnedEntry>) -> Payload {
        Payload {
            entries,
            ..Payload::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len() + self.items.len() + self.sessions.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`th item of the stream.
    fn get(&self, mut i: usize) -> Option<Item<'_>> {
        if let Some(e) = self.entries.get(i) {
            return Some(e.item());
        }
        i -= self.entries.len();
        if let Some(it) = self.items.get(i) {
            return Some(it.item());
        }
        i -= self.items.len();
        if let Some(s) = self.sessions.get(i) {
            return Some(Item::Session(*s));
        }
        i -= self.sessions.len();
        self.tail.get(i).map(|e| e.item())
    }
}

pub struct Outgoing {
    pub to: NodeId,
    pub stream: u32,
    header: Header,
    mtu: usize,
    payload: Arc<Payload>,
    /// The next item to encode.
    pos: usize,
    /// The last chunk is encoded.
    finished: bool,
    /// Encoded chunks from `acked` on.
    unacked: VecDeque<Vec<u8>>,
    acked: u32,
    next: u32,
    /// When the first unacknowledged chunk was last sent.
    sent_at: Time,
}

impl Outgoing {
    /// A transfer of `payload` in chunks of at most `mtu` bytes (at least
    /// one, the last flagged).
    pub fn new(header: Header, to: NodeId, stream: u32, payload: Arc<Payload>, mtu: usize) -> Outgoing {
        Outgoing {
            to,
            stream,
            header,
            mtu,
            payload,
            pos: 0,
            finished: false,
            unacked: VecDeque::new(),
            acked: 0,
            next: 0,
            sent_at: Time::ZERO,
        }
    }

    /// Encodes the next chunk.
    fn encode(&mut self) {
        let mut buf = vec![0u8; self.mtu];
        let n = self.acked + self.unacked.len() as u32;
        let Ok(mut e) = Encoder::transfer(&mut buf, self.header, self.stream, n, false) else {
            // An MTU too small for a chunk header: end the stream empty.
            self.finished = true;
            return;
        };
        while let Some(item) = self.payload.get(self.pos) {
            if !e.push_item(&item) {
                break;
            }
            self.pos += 1;
        }
        let more = self.pos < self.payload.len();
        // An item too big for one datagram ends the stream early rather
        // than loop: the receiver then lacks it.
        if !more || e.is_empty() {
            e.set_last();
            self.finished = true;
        }
        let len = e.finish();
        buf.truncate(len);
        self.unacked.push_back(buf);
    }

    pub fn done(&self) -> bool {
        self.finished && self.unacked.is_empty()
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
        if n >= self.acked + window {
            return None;
        }
        if (n - self.acked) as usize == self.unacked.len() {
            if self.finished {
                return None;
            }
            self.encode();
        }
        if n == self.acked {
            self.sent_at = now;
        }
        self.next += 1;
        self.unacked.get((n - self.acked) as usize).map(|c| &c[..])
    }

    /// Takes a cumulative acknowledgement; returns whether it was progress.
    pub fn on_ack(&mut self, chunks: u32, now: Time) -> bool {
        let known = self.acked + self.unacked.len() as u32;
        let chunks = chunks.min(known);
        if chunks <= self.acked {
            return false;
        }
        self.unacked.drain(..(chunks - self.acked) as usize);
        self.acked = chunks;
        self.next = self.next.max(chunks);
        self.sent_at = now;
        true
    }

    pub fn deadline(&self, rto: Span) -> Option<Time> {
        (!self.done()).then_some(self.sent_at + rto)
    }
}

/// The receiving end: keeps chunks that arrive early (datagrams reorder)
/// and acknowledges the in-order prefix.
#[derive(Debug, Default)]
pub struct Incoming {
    next: u32,
    done: bool,
    pub items: Vec<Received>,
    /// Chunks past `next`, with their last flag.
    ahead: std::collections::BTreeMap<u32, (bool, Vec<Received>)>,
}

/// Chunks kept ahead of the next expected one (the sender's window is
/// far smaller; this bounds what a confused sender can make us hold).
const AHEAD_MAX: u32 = 1024;

fn owned(items: Items<'_>) -> Vec<Received> {
    items
        .map(|item| match item {
            Item::History(h) => Received::Entry(OwnedEntry::from_item(&h)),
            Item::Snapshot(s) => Received::Item(OwnedItem {
                key: s.key,
                zxid: s.zxid,
                value: s.value.to_vec(),
            }),
            Item::Session(s) => Received::Session(s),
        })
        .collect()
}

impl Incoming {
    /// Takes chunk `chunk`. Returns whether it was new (in order, or kept
    /// for later).
    pub fn on_chunk(&mut self, chunk: u32, last: bool, items: Items<'_>) -> bool {
        if self.done || chunk < self.next || chunk >= self.next.saturating_add(AHEAD_MAX) {
            return false;
        }
        if chunk > self.next {
            if self.ahead.contains_key(&chunk) {
                return false;
            }
            self.ahead.insert(chunk, (last, owned(items)));
            return true;
        }
        self.items.extend(owned(items));
        self.next += 1;
        self.done = last;
        while !self.done {
            let Some((last, items)) = self.ahead.remove(&self.next) else {
                break;
            };
            self.items.extend(items);
            self.next += 1;
            self.done = last;
        }
        if self.done {
            self.ahead.clear();
        }
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
        let payload = Arc::new(Payload::of_entries(entries.clone()));
        let mut out = Outgoing::new(h, 1, 9, payload, 256);
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
        assert!(inc.received() > 10, "many chunks");
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
    fn a_snapshot_payload_arrives_in_order_and_is_encoded_a_window_at_a_time() {
        let payload = Arc::new(Payload {
            entries: vec![entry(1)],
            items: (0..500)
                .map(|k| OwnedItem {
                    key: k,
                    zxid: Zxid::new(1, k as u32),
                    value: vec![k as u8; 24],
                })
                .collect(),
            sessions: vec![SessionItem {
                origin: 2,
                lane: 1,
                session: 3,
                seq: 4,
                owner: 5,
            }],
            tail: vec![entry(9)],
        });
        let mut out = Outgoing::new(chunk_header(1, 2, 0), 1, 5, payload.clone(), 300);
        let mut inc = Incoming::default();
        let mut now = Time(0);
        while !out.done() {
            now = now + Span(10);
            let mut sent = 0;
            while let Some(c) = out.poll(now, Span(100), 4) {
                let c = c.to_vec();
                deliver(&mut inc, &c);
                sent += 1;
            }
            assert!(sent <= 4 && out.unacked.len() <= 4, "only the window is encoded");
            out.on_ack(inc.received(), now);
        }
        let want: Vec<Received> = std::iter::once(Received::Entry(entry(1)))
            .chain(payload.items.iter().cloned().map(Received::Item))
            .chain(payload.sessions.iter().copied().map(Received::Session))
            .chain(std::iter::once(Received::Entry(entry(9))))
            .collect();
        assert_eq!(inc.items, want);
    }

    #[test]
    fn chunks_arriving_out_of_order_are_kept() {
        let entries: Vec<OwnedEntry> = (1..=60).map(entry).collect();
        let payload = Arc::new(Payload::of_entries(entries.clone()));
        let mut out = Outgoing::new(chunk_header(1, 2, 0), 1, 9, payload, 256);
        let mut chunks = Vec::new();
        while let Some(c) = out.poll(Time(0), Span(100), 64) {
            chunks.push(c.to_vec());
        }
        assert!(chunks.len() > 5);
        let mut inc = Incoming::default();
        for c in chunks.iter().rev() {
            deliver(&mut inc, c);
        }
        assert!(inc.done(), "the whole window, delivered backwards, completes");
        assert_eq!(inc.received(), chunks.len() as u32);
        assert_eq!(inc.items.len(), entries.len());
        assert!(!deliver(&mut inc, &chunks[2]), "a duplicate is ignored");
    }

    #[test]
    fn an_empty_transfer_is_one_last_chunk() {
        let mut out = Outgoing::new(chunk_header(1, 2, 0), 1, 3, Arc::default(), 256);
        let mut inc = Incoming::default();
        let c = out.poll(Time(0), Span(10), 4).unwrap().to_vec();
        assert!(out.poll(Time(0), Span(10), 4).is_none(), "one chunk only");
        assert!(deliver(&mut inc, &c));
        assert!(inc.done() && inc.items.is_empty());
        assert!(!deliver(&mut inc, &c), "a duplicate is ignored");
    }
}
