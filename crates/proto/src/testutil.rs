//! Helpers for the state-machine tests: build datagrams as a peer would and
//! decode what a lane sends, so tests read as "message in, messages out".

use crate::{LaneConfig, NodeSet, Transmit};
use rzab_wire::*;

pub const CLUSTER: u32 = 0xC0FFEE;

pub fn cfg(node: NodeId, members: &[NodeId]) -> LaneConfig {
    let mut c = LaneConfig::new(CLUSTER, node, NodeSet::from_ids(members.iter().copied()), 0, 0);
    c.log_capacity = 64;
    c.window = 32;
    c.max_sessions = 8;
    c.max_pending_writes = 8;
    c.prepare_credits = 2;
    c.commit_credits = 2;
    c.write_credits = 2;
    c.value_max = 8;
    c.mtu = 512;
    c
}

pub fn header(kind: Kind, sender: NodeId, seq: u64) -> Header {
    Header {
        kind,
        cluster_id: CLUSTER,
        epoch: 1,
        sender,
        lane: 0,
        count: 0,
        seq,
    }
}

pub fn write<'a>(session: u32, seq: u64, key: u64, value: &'a [u8]) -> WriteEntry<'a> {
    WriteEntry {
        session,
        seq,
        key,
        op: Op::Put,
        value,
    }
}

/// A Write datagram from `sender` carrying `writes`.
pub fn write_msg(sender: NodeId, seq: u64, writes: &[WriteEntry<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut e = Encoder::write(&mut buf, header(Kind::Write, sender, seq)).unwrap();
    for w in writes {
        assert!(e.push_write(w));
    }
    let n = e.finish();
    buf.truncate(n);
    buf
}

pub fn ack_msg(sender: NodeId, body: AckBody, missing: &[Range]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut e = Encoder::ack(&mut buf, header(Kind::Ack, sender, 0), &body).unwrap();
    for r in missing {
        assert!(e.push_range(*r));
    }
    let n = e.finish();
    buf.truncate(n);
    buf
}

pub fn prepare_msg(seq: u64, first_lid: u64, commit_lid: u64, entries: &[PrepareEntry<'_>]) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut e = Encoder::prepare(&mut buf, header(Kind::Prepare, 0, seq), first_lid, commit_lid).unwrap();
    for p in entries {
        assert!(e.push_prepare(p));
    }
    let n = e.finish();
    buf.truncate(n);
    buf
}

pub fn commit_msg(seq: u64, first: u64, count: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    let mut e = Encoder::commit(&mut buf, header(Kind::Commit, 0, seq)).unwrap();
    assert!(e.push_range(Range { first, count }));
    let n = e.finish();
    buf.truncate(n);
    buf
}

pub fn prep(zxid: u32, origin: NodeId, session: u32, seq: u64, key: u64, value: &[u8]) -> PrepareEntry<'_> {
    PrepareEntry {
        zxid: Zxid::new(1, zxid),
        key,
        session,
        seq,
        origin,
        op: Op::Put,
        value,
    }
}

pub fn msg(bytes: &[u8]) -> Message<'_> {
    decode(bytes).expect("test datagrams are valid")
}

/// A datagram a lane sent, decoded into owned pieces for assertions.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    Write {
        to: crate::Dest,
        seq: u64,
        writes: Vec<(u32, u64, u64)>,
    },
    Prepare {
        to: crate::Dest,
        seq: u64,
        first_lid: u64,
        commit_lid: u64,
        zxids: Vec<u32>,
    },
    Ack {
        to: crate::Dest,
        body: AckBody,
        missing: Vec<(u64, u32)>,
    },
    Commit {
        to: crate::Dest,
        seq: u64,
        ranges: Vec<(u64, u32)>,
    },
}

pub fn sent(t: Transmit, buf: &[u8]) -> Sent {
    let m = decode(&buf[..t.len]).expect("a lane sends valid datagrams");
    assert_eq!(m.header.cluster_id, CLUSTER);
    match m.body {
        Body::Write(ws) => Sent::Write {
            to: t.dest,
            seq: m.header.seq,
            writes: ws.map(|w| (w.session, w.seq, w.key)).collect(),
        },
        Body::Prepare {
            first_lid,
            commit_lid,
            entries,
        } => Sent::Prepare {
            to: t.dest,
            seq: m.header.seq,
            first_lid,
            commit_lid,
            zxids: entries.map(|e| e.zxid.counter()).collect(),
        },
        Body::Ack { body, missing } => Sent::Ack {
            to: t.dest,
            body,
            missing: missing.map(|r| (r.first, r.count)).collect(),
        },
        Body::Commit(rs) => Sent::Commit {
            to: t.dest,
            seq: m.header.seq,
            ranges: rs.map(|r| (r.first, r.count)).collect(),
        },
        Body::Hello(_) | Body::Control(_) => panic!("lanes send neither Hello nor control messages"),
    }
}
