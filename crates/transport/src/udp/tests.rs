//! What the integration tests cannot reach: the GSO fallback, and the
//! gated receive (`recv_readable`) a hosted lane uses.

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

/// Whether descriptor `fd` has input now.
fn readable(fd: std::os::fd::RawFd) -> bool {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    sys::poll(&mut p, Duration::ZERO).expect("poll");
    p[0].revents != 0
}

#[test]
fn a_gated_receive_reads_only_marked_descriptors_and_says_which_it_emptied() {
    let (mut a, mut b) = pair();
    // One send each: a segmented send would arrive as one read.
    for i in 0..6u8 {
        let mut batch = SendBatch::new(1, 100);
        batch.next_buf().expect("room").fill(i);
        batch.push(Dest::Node(1), 100);
        a.send(&batch).expect("send");
    }
    let fds = b.wait_fds();
    assert_eq!(fds.len(), 2, "doorbell and unicast socket");
    let start = Instant::now();
    while !readable(fds[1]) && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(1));
    }

    // Nothing marked: the socket is not read at all.
    let mut rb = RecvBatch::new(4, 100);
    assert_eq!(b.recv_readable(&mut rb, 0).expect("recv"), (0, 0));
    assert_eq!(b.stats().recv_calls, 0);

    // A read that fills the batch may have left more: not reported empty.
    // One that does not fill it found the queue empty.
    let mut got = Vec::new();
    let mut emptied = 0;
    while got.len() < 6 && start.elapsed() < Duration::from_secs(3) {
        rb.clear();
        let (n, empty) = b.recv_readable(&mut rb, 0b10).expect("recv");
        assert_eq!(empty, if n == 4 { 0 } else { 0b10 }, "{n} datagrams read");
        emptied += usize::from(empty != 0);
        got.extend(rb.iter().map(|d| d[0]));
    }
    assert_eq!(got, (0..6).collect::<Vec<u8>>());
    assert!(emptied >= 1);

    // A ring is consumed only when its descriptor is marked.
    b.waker().wake_by_ref();
    rb.clear();
    assert_eq!(b.recv_readable(&mut rb, 0b10).expect("recv"), (0, 0b10));
    assert!(readable(fds[0]), "the ring is still there");
    assert_eq!(b.recv_readable(&mut rb, 0b01).expect("recv"), (0, 0b01));
    assert!(!readable(fds[0]), "the ring was answered");
    b.waker().wake_by_ref();
    assert!(readable(fds[0]), "a ring after the answer is heard");
}

#[test]
fn reads_left_pending_are_delivered_whatever_is_marked() {
    let (mut a, mut b) = pair();
    // Six equal datagrams in one segmented send arrive as one read where
    // the kernel offloads both ways. Reads left pending exist only then (a
    // read never asks for more messages than the batch has room for), so
    // without offload this checks only the plain case.
    let mut batch = SendBatch::new(8, 100);
    for i in 0..6u8 {
        batch.next_buf().expect("room").fill(i);
        batch.push(Dest::Node(1), 100);
    }
    a.send(&batch).expect("send");
    let fds = b.wait_fds();
    let start = Instant::now();
    while !readable(fds[1]) && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut rb = RecvBatch::new(4, 100);
    let (n, _) = b.recv_readable(&mut rb, 0b10).expect("recv");
    assert_eq!(n, 4);
    let mut got: Vec<u8> = rb.iter().map(|d| d[0]).collect();
    rb.clear();
    let (n, empty) = b.recv_readable(&mut rb, 0).expect("recv");
    assert_eq!(empty, 0);
    if b.stats().gro_reads > 0 {
        assert_eq!(n, 2, "the rest of the one read");
    }
    got.extend(rb.iter().map(|d| d[0]));
    while got.len() < 6 && start.elapsed() < Duration::from_secs(3) {
        rb.clear();
        b.recv_readable(&mut rb, 0b10).expect("recv");
        got.extend(rb.iter().map(|d| d[0]));
    }
    assert_eq!(got, (0..6).collect::<Vec<u8>>());
}
