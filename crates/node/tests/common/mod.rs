//! What the hostile-datagram tests share.

use rzab_wire::{Encoder, Header, Kind, Op, WriteEntry};

/// A well-formed Write datagram of `cluster_id`, `epoch` and `sender`:
/// dropped by a live cluster when any of them is wrong.
pub fn write_datagram(cluster_id: u32, epoch: u32, sender: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let h = Header {
        kind: Kind::Write,
        cluster_id,
        epoch,
        sender,
        lane: 0,
        count: 0,
        seq: 1,
    };
    let mut e = Encoder::write(&mut buf, h).expect("room");
    assert!(e.push_write(&WriteEntry {
        session: 0,
        seq: 1,
        key: 3,
        op: Op::Put,
        value: &[7; 32]
    }));
    let n = e.finish();
    buf.truncate(n);
    buf
}
