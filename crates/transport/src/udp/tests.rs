//! What the integration tests cannot reach: the GSO fallback.

use super::*;
use crate::{Dest, NodeId};
use rzab_proto::BroadcastMode;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Instant;

/// SO_NO_CHECK (asm-generic/socket.h): a socket without UDP checksums,
/// which the kernel refuses to segment (EINVAL) as a device without
/// checksum offload does (EIO).
const SO_NO_CHECK: libc::c_int = 11;

fn pair() -> (UdpEndpoint, UdpEndpoint) {
    let at = |n: NodeId| Ipv4Addr::new(127, 0, 200, n + 1);
    let port = UdpSocket::bind(SocketAddrV4::new(at(0), 0))
        .and_then(|s| s.local_addr())
        .expect("ephemeral port")
        .port();
    let members: Vec<_> = (0..2)
        .map(|n| (n, SocketAddr::V4(SocketAddrV4::new(at(n), port))))
        .collect();
    let open = |n| {
        let mut c = UdpConfig::new(n, 0, members.clone());
        c.broadcast = BroadcastMode::Unicast;
        c.socket_buffer = 1 << 20;
        UdpEndpoint::new(&c).expect("endpoint")
    };
    (open(0), open(1))
}

#[test]
fn a_refused_gso_send_falls_back_and_is_remembered() {
    let (mut a, mut b) = pair();
    sys::set_opt(&a.unicast, libc::SOL_SOCKET, SO_NO_CHECK, 1 as libc::c_int).expect("SO_NO_CHECK");
    let mut batch = SendBatch::new(8, 1000);
    for i in 0..8u8 {
        batch.next_buf().expect("room").fill(i);
        batch.push(Dest::Node(1), 1000);
    }
    for _ in 0..2 {
        a.send(&batch).expect("send");
    }
    assert!(!a.info().gso, "GSO is off after the kernel refused it");
    let s = a.stats();
    assert_eq!((s.datagrams_sent, s.gso_sends, s.send_errors), (16, 0, 0));
    assert_eq!(
        s.send_calls,
        1 + 8 + 1,
        "refused send, 8 singles, then one plain sendmmsg"
    );
    let mut got = Vec::new();
    let mut rb = RecvBatch::new(16, 1000);
    let start = Instant::now();
    while got.len() < 16 && start.elapsed() < Duration::from_secs(3) {
        rb.clear();
        if b.recv(&mut rb).expect("recv") == 0 {
            b.wait(Duration::from_millis(20)).expect("wait");
        }
        got.extend(rb.iter().map(|d| d[0]));
    }
    let want: Vec<u8> = (0..2).flat_map(|_| 0..8u8).collect();
    assert_eq!(got, want);
}
