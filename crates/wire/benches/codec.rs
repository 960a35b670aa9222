//! Encode and decode cost of a full Prepare datagram (the leader's hot path).

use rzab_wire::{Body, Encoder, Header, Kind, Op, PrepareEntry, Zxid, decode};

fn main() {
    divan::main();
}

const MTU: usize = 4096;

fn header() -> Header {
    Header {
        kind: Kind::Prepare,
        cluster_id: 7,
        epoch: 1,
        sender: 0,
        lane: 0,
        count: 0,
        seq: 1,
    }
}

fn fill(buf: &mut [u8], value: &[u8]) -> (usize, u16) {
    let mut enc = Encoder::prepare(buf, header(), 100, 90).expect("mtu holds the body");
    let mut i = 0u64;
    while enc.push_prepare(&PrepareEntry {
        zxid: Zxid::new(1, i as u32),
        key: i * 7919,
        session: i as u32,
        seq: 1,
        origin: 1,
        op: Op::Put,
        value,
    }) {
        i += 1;
    }
    let count = enc.count();
    (enc.finish(), count)
}

#[divan::bench(args = [32, 256, 1024])]
fn encode_prepare(bencher: divan::Bencher, value_len: usize) {
    let value = vec![0xAB; value_len];
    let mut buf = vec![0u8; MTU];
    let entries = fill(&mut buf, &value).1;
    bencher
        .counter(divan::counter::ItemsCount::new(entries as usize))
        .bench_local(|| fill(divan::black_box(&mut buf), &value));
}

#[divan::bench(args = [32, 256, 1024])]
fn decode_prepare(bencher: divan::Bencher, value_len: usize) {
    let value = vec![0xAB; value_len];
    let mut buf = vec![0u8; MTU];
    let (len, entries) = fill(&mut buf, &value);
    bencher
        .counter(divan::counter::ItemsCount::new(entries as usize))
        .bench_local(|| {
            let msg = decode(divan::black_box(&buf[..len])).expect("valid");
            let Body::Prepare { entries, .. } = msg.body else {
                unreachable!()
            };
            entries.map(|e| e.key).sum::<u64>()
        });
}
