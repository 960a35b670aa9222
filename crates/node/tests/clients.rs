//! External clients against an in-process cluster: the client crate over
//! TCP on loopback, through each node's gateway.

use rzab_client::protocol::{Binding, ErrorCode, Reply, Request, next_frame};
use rzab_client::{Client, ClientConfig, Error};
use rzab_node::RunConfig;
use rzab_node::report::NodeOutcome;
use rzab_node::serve::InprocCluster;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn cluster(token: Option<&str>) -> InprocCluster {
    cluster_losing(token, 0.0)
}

fn cluster_losing(token: Option<&str>, loss: f64) -> InprocCluster {
    let mut cfg = RunConfig {
        loss,
        ..RunConfig::default()
    };
    cfg.clients.slots = 8;
    cfg.clients.max_key = 32;
    cfg.clients.max_value = 200;
    cfg.clients.capacity = 10_000;
    cfg.clients.max_inflight = 64;
    cfg.clients.token = token.map(str::to_string);
    InprocCluster::start(&cfg).expect("cluster starts")
}

fn assert_same_digests(outcomes: &[NodeOutcome]) {
    let digests: Vec<u64> = outcomes.iter().map(|o| o.digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "digests {digests:x?}");
}

fn assert_no_errors(outcomes: &[NodeOutcome]) {
    assert!(
        outcomes.iter().all(|o| o.errors.is_empty()),
        "{:?}",
        outcomes.iter().map(|o| &o.errors).collect::<Vec<_>>()
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(addrs: &[SocketAddr], token: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new(addrs.to_vec());
    c.token = token.map(|t| t.as_bytes().to_vec());
    c.connect_timeout = Duration::from_secs(5);
    c
}

#[test]
fn writes_reads_and_deletes_replicate_to_every_node() {
    let c = cluster(None);
    let addrs = c.addrs();
    rt().block_on(async {
        let a = Client::connect(config(&addrs[1..2], None))
            .await
            .expect("connect");
        let z1 = a.put(b"alpha", b"one").await.expect("put");
        let got = a.get(b"alpha").await.expect("get").expect("present");
        assert_eq!((got.value.as_slice(), got.version), (&b"one"[..], z1));
        assert!(a.last_zxid() >= z1);
        // Every replica has it once its session has seen the write.
        for n in 0..addrs.len() {
            let mut cfg = config(&addrs[n..n + 1], None);
            cfg.max_inflight = 4;
            let b = Client::connect(cfg).await.expect("connect");
            let v = b.sync_get(b"alpha").await.expect("sync get");
            assert_eq!(v.map(|v| v.value), Some(b"one".to_vec()), "node {n}");
        }
        assert_eq!(a.delete(b"alpha").await, Ok(Some(true)));
        assert_eq!(a.delete(b"alpha").await, Ok(Some(false)));
        assert_eq!(a.get(b"alpha").await, Ok(None));
        // Keys that share a prefix or differ in one byte stay apart.
        for k in [&b"k"[..], b"k\0", b"k\0\0", b"K"] {
            a.put(k, k).await.expect("put");
        }
        for k in [&b"k"[..], b"k\0", b"k\0\0", b"K"] {
            assert_eq!(a.get(k).await.expect("get").map(|v| v.value), Some(k.to_vec()));
        }
    });
    let outcomes = c.stop();
    assert_same_digests(&outcomes);
    assert_no_errors(&outcomes);
}

#[test]
fn pipelined_requests_are_answered_in_order_per_session() {
    let c = cluster(None);
    let addrs = c.addrs();
    rt().block_on(async {
        let cl = Client::connect(config(&addrs[2..3], None))
            .await
            .expect("connect");
        // 200 writes then reads of one key, all in flight at once: each
        // read sees the write issued just before it (FIFO, read-your-writes).
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (w, r) = (cl.clone(), cl.clone());
            let v = i.to_le_bytes();
            tasks.push(tokio::spawn(async move {
                let put = w.put(b"counter", &v);
                let get = r.get(b"counter");
                // Requests go out in the order first polled: `biased`
                // polls the put first (plain join! rotates).
                let (p, g) = tokio::join!(biased; put, get);
                (p.expect("put"), g.expect("get").expect("present"))
            }));
        }
        let mut zxids = Vec::new();
        for t in tasks {
            let (z, got) = t.await.expect("task");
            assert!(
                got.version >= z,
                "a read saw an older version than the write before it: {z:#x} then {got:?}"
            );
            zxids.push(z);
        }
        zxids.sort_unstable();
        zxids.dedup();
        assert_eq!(zxids.len(), 200, "every write got its own zxid");
    });
}

/// Many writes of one session in flight while the network loses 5% of the
/// datagrams: the leader sequences a session's writes only in order (a
/// lost one is resent and the ones after it wait), so they apply in the
/// order issued, and every replica ends equal.
#[test]
fn pipelined_writes_apply_in_issue_order_under_loss() {
    let c = cluster_losing(None, 0.05);
    let addrs = c.addrs();
    rt().block_on(async {
        let cl = Client::connect(config(&addrs[1..2], None))
            .await
            .expect("connect");
        let mut tasks = Vec::new();
        for i in 0..300u32 {
            let w = cl.clone();
            let key = format!("k{}", i % 7);
            // Spawned in order, each polled first in order (one runtime
            // thread at a time would not guarantee it: send them via one
            // task instead).
            tasks.push(async move { w.put(key.as_bytes(), &i.to_le_bytes()).await });
        }
        let results = futures_in_order(tasks).await;
        let zxids: Vec<u64> = results.into_iter().map(|r| r.expect("put")).collect();
        assert!(
            zxids.windows(2).all(|w| w[0] < w[1]),
            "writes applied out of issue order"
        );
        // The last write to each key is what every replica reads.
        for n in 0..addrs.len() {
            let b = Client::connect(config(&addrs[n..n + 1], None))
                .await
                .expect("connect");
            for k in 0..7u32 {
                let last = (0..300u32).filter(|i| i % 7 == k).max().expect("some");
                let v = b
                    .sync_get(format!("k{k}").as_bytes())
                    .await
                    .expect("get")
                    .expect("present");
                assert_eq!(v.value, last.to_le_bytes(), "node {n} key k{k}");
            }
        }
    });
    let outcomes = c.stop();
    assert_same_digests(&outcomes);
    assert_no_errors(&outcomes);
}

/// Polls every future once in order (so their requests go out in that
/// order), then waits for all.
async fn futures_in_order<F: std::future::Future>(fs: Vec<F>) -> Vec<F::Output> {
    let mut fs: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

#[test]
fn a_session_continues_at_another_replica_without_going_back() {
    let mut c = cluster(None);
    let addrs = c.addrs();
    rt().block_on(async {
        // Node 1 first, then node 2 when node 1's gateway goes away.
        let cl = Client::connect(config(&addrs[1..], None)).await.expect("connect");
        assert_eq!(cl.node(), 1);
        let z = cl.put(b"moving", b"v1").await.expect("put");
        c.stop_gateway(1);
        // The request in flight (if any) fails; the next reconnects.
        let mut got = cl.get(b"moving").await;
        if got == Err(Error::ConnectionLost) {
            got = cl.get(b"moving").await;
        }
        let v = got.expect("get at node 2").expect("present");
        assert_eq!(cl.node(), 2);
        assert!(v.version >= z && cl.last_zxid() >= z);
    });
}

/// A client that sends and never reads: the server stops reading it once
/// `max_inflight` requests wait (TCP pushes back), keeps serving others,
/// and answers every request, in order, once the client reads.
#[test]
fn a_client_that_does_not_read_is_held_back_not_buffered() {
    let c = cluster(None);
    let addrs = c.addrs();
    let mut s = connect_raw(addrs[0], 10);
    s.write_all(&hello(0, 0, None, b"")).expect("hello");
    let mut frame = Vec::new();
    Request::Get { key: &[b'n'; 32] }.encode(&mut frame);
    let batch = frame.repeat(1000);
    // Write until the socket pushes back (bounded: 4 M requests, far more
    // than the kernel's buffers hold in requests and answers).
    s.set_nonblocking(true).expect("nonblocking");
    let (mut bytes_sent, mut blocked) = (0usize, false);
    let start = std::time::Instant::now();
    while bytes_sent < 4000 * batch.len() && start.elapsed() < Duration::from_secs(20) {
        let at = bytes_sent % batch.len();
        match s.write(&batch[at..]) {
            Ok(n) => bytes_sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Pushed back; make sure it stays so.
                std::thread::sleep(Duration::from_millis(200));
                match s.write(&batch[at..]) {
                    Ok(n) => bytes_sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) => panic!("write: {e}"),
                }
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        blocked,
        "{bytes_sent} bytes of unread requests were all taken: no back-pressure"
    );
    let sent = (bytes_sent / frame.len()) as u64;
    // Meanwhile another session is served at the same node.
    rt().block_on(async {
        let other = Client::connect(config(&addrs[0..1], None))
            .await
            .expect("connect");
        other
            .put(b"k", b"v")
            .await
            .expect("put while another connection stalls");
    });
    // Reading now drains every answer in order (the partial request frame
    // at the end, if any, is never answered).
    s.set_nonblocking(false).expect("blocking");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let mut at = 0;
    let mut answers = 0u64;
    while let Ok(Some((body, n))) = next_frame(&all[at..], usize::MAX) {
        match Reply::decode(body) {
            Ok(Reply::Welcome { .. }) => {}
            Ok(Reply::NotFound { .. }) => answers += 1,
            other => panic!("unexpected {other:?}"),
        }
        at += n;
    }
    assert_eq!(answers, sent, "every whole request answered");
}

#[test]
fn bad_input_gets_an_error_and_changes_nothing() {
    let c = cluster(Some("s3cret"));
    let addrs = c.addrs();
    rt().block_on(async {
        // Wrong token: refused at the handshake, with the reason.
        match Client::connect(config(&addrs, Some("nope"))).await {
            Err(Error::Server { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
            Err(e) => panic!("unexpected {e}"),
            Ok(_) => panic!("a wrong token was admitted"),
        }
        let cl = Client::connect(config(&addrs, Some("s3cret")))
            .await
            .expect("connect");
        // Too long a key or value: refused before sending (the client knows
        // the limits from the handshake).
        assert!(matches!(cl.put(&[b'k'; 33], b"v").await, Err(Error::Invalid(_))));
        assert!(matches!(cl.put(b"k", &[0; 201]).await, Err(Error::Invalid(_))));
        assert!(matches!(cl.get(b"").await, Err(Error::Invalid(_))));
        cl.put(b"kept", b"v").await.expect("put");
    });
    // Raw frames the client library would never send.
    let raw = |frames: &[u8]| -> Vec<u8> {
        let mut s = connect_raw(addrs[0], 5);
        s.write_all(&hello(0, 0, None, b"s3cret")).expect("hello");
        s.write_all(frames).expect("frames");
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        all
    };
    let replies = |bytes: &[u8]| -> Vec<String> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Ok(Some((body, n))) = next_frame(&bytes[at..], usize::MAX) {
            out.push(match Reply::decode(body) {
                Ok(Reply::Error { code, .. }) => format!("error {code:?}"),
                Ok(Reply::Welcome { .. }) => "welcome".into(),
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("undecodable {e}"),
            });
            at += n;
        }
        out
    };
    // A key past the limit in a well-formed frame: an error, and the
    // connection goes on (the Get after it is answered); then garbage
    // closes it after an error reply.
    let mut frames = Vec::new();
    Request::Put {
        key: &[b'x'; 40],
        value: b"v",
    }
    .encode(&mut frames);
    Request::Get { key: b"kept" }.encode(&mut frames);
    frames.extend_from_slice(&[3, 0, 0, 0, 0x7e, 1, 2]);
    Request::Get { key: b"kept" }.encode(&mut frames);
    let r = replies(&raw(&frames));
    assert_eq!(r.len(), 4, "{r:?}");
    assert_eq!(r[0], "welcome");
    assert_eq!(r[1], "error KeyTooLong");
    assert!(r[2].starts_with("Value"), "{r:?}");
    assert_eq!(r[3], "error Malformed", "the Get after garbage is never answered");
    // A frame longer than any request: refused from its length prefix.
    let r = replies(&raw(&[0xff, 0xff, 0xff, 0x0f]));
    assert_eq!(r, ["welcome", "error TooLarge"]);
    let counts = c.counts();
    assert_eq!(counts.iter().map(|c| c.malformed).sum::<u64>(), 2);
    assert!(counts.iter().map(|c| c.refused).sum::<u64>() >= 1);
    // Nothing but the one put changed the store: a linearizable read at
    // each node (a Sync write each) sees it, and every node applied those
    // four writes and nothing else.
    rt().block_on(async {
        for n in 0..addrs.len() {
            let b = Client::connect(config(&addrs[n..n + 1], Some("s3cret")))
                .await
                .expect("connect");
            let v = b.sync_get(b"kept").await.expect("sync get").expect("present");
            assert_eq!(v.value, b"v");
        }
    });
    let outcomes = c.stop();
    let applied: Vec<u64> = outcomes.iter().map(|o| o.applied).collect();
    assert!(applied.iter().all(|&a| a >= 4), "{applied:?}");
    assert_same_digests(&outcomes);
}

/// A Hello with a long token fits even when keys and values are tiny.
#[test]
fn small_limits_still_admit_a_long_token() {
    let mut cfg = RunConfig::default();
    cfg.clients.slots = 2;
    cfg.clients.max_key = 8;
    cfg.clients.max_value = 0;
    let token = "t".repeat(1000);
    cfg.clients.token = Some(token.clone());
    let c = InprocCluster::start(&cfg).expect("cluster starts");
    let addrs = c.addrs();
    rt().block_on(async {
        let cl = Client::connect(config(&addrs, Some(&token)))
            .await
            .expect("admitted");
        cl.put(b"k", b"").await.expect("an empty value fits");
        assert!(matches!(cl.put(b"k", b"x").await, Err(Error::Invalid(_))));
    });
}

/// One frame from `s` (blocking).
/// A plain TCP connection to `addr` whose reads give up after `secs`.
fn connect_raw(addr: SocketAddr, secs: u64) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(secs)))
        .expect("timeout");
    s
}

/// A Hello frame.
fn hello(session: u64, last_zxid: u64, prev: Option<Binding>, token: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Request::Hello {
        session,
        last_zxid,
        prev,
        token,
    }
    .encode(&mut out);
    out
}

fn read_reply(s: &mut TcpStream, buf: &mut Vec<u8>) -> Vec<u8> {
    loop {
        if let Ok(Some((body, n))) = next_frame(buf, usize::MAX) {
            let body = body.to_vec();
            buf.drain(..n);
            return body;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A session that saw more than this replica will apply for now is
/// refused with NotServing and why, within the handshake's bound (4 s),
/// before a client's default connect timeout (5 s) gives up on the server.
#[test]
fn a_replica_that_cannot_serve_a_session_says_so_in_time() {
    let c = cluster(None);
    let addrs = c.addrs();
    let mut s = connect_raw(addrs[1], 30);
    let asked = Instant::now();
    s.write_all(&hello(0, u64::MAX >> 1, None, b"")).expect("hello");
    let mut buf = Vec::new();
    match Reply::decode(&read_reply(&mut s, &mut buf)) {
        Ok(Reply::Error { code, message }) => {
            assert_eq!(code, ErrorCode::NotServing, "{message}");
            assert!(message.contains("not serving at zxid"), "{message}");
        }
        other => panic!("expected NotServing, got {other:?}"),
    }
    // A bound, not a speed: 4 s expected, the former 10 s refused.
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_no_errors(&c.stop());
}

/// A raw connection to `addr` continuing `session`; returns it, the
/// Welcome's binding and the read buffer.
fn raw_session(addr: SocketAddr, session: u64, prev: Option<Binding>) -> (TcpStream, u64, Binding, Vec<u8>) {
    let mut s = connect_raw(addr, 10);
    s.write_all(&hello(session, 0, prev, b"")).expect("hello");
    let mut buf = Vec::new();
    match Reply::decode(&read_reply(&mut s, &mut buf)) {
        Ok(Reply::Welcome { session, binding, .. }) => (s, session, binding, buf),
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// FIFO order across replicas: once a session continues at another node
/// naming its previous binding, the old connection's writes never apply,
/// even if that connection is still open and still sending.
#[test]
fn a_session_that_moves_fences_off_its_old_connection() {
    let c = cluster(None);
    let addrs = c.addrs();
    let put = |value: &'static [u8]| Request::Put { key: b"k", value };
    let (mut old, session, b1, mut old_buf) = raw_session(addrs[1], 0, None);
    assert_eq!(b1.node, 1);
    let r = ask(&mut old, &mut old_buf, &[put(b"first")]);
    assert!(matches!(Reply::decode(&r[0]), Ok(Reply::Written { .. })));
    // The client gives up on node 1 (the connection looks dead to it) and
    // continues at node 2, naming the old binding.
    let (mut new, same, b2, mut new_buf) = raw_session(addrs[2], session, Some(b1));
    assert_eq!((same, b2.node, b2.lane), (session, 2, b1.lane));
    // A write the old connection sends now must not apply.
    match Reply::decode(&ask(&mut old, &mut old_buf, &[put(b"stale")])[0]) {
        Ok(Reply::Error { message, .. }) => assert!(message.contains("moved"), "{message}"),
        other => panic!("the fenced connection's write was not refused: {other:?}"),
    }
    let mut byte = [0u8; 1];
    assert_eq!(old.read(&mut byte).expect("read"), 0, "and the connection closed");
    let r = ask(
        &mut new,
        &mut new_buf,
        &[put(b"second"), Request::SyncGet { key: b"k" }],
    );
    assert!(matches!(Reply::decode(&r[0]), Ok(Reply::Written { .. })));
    match Reply::decode(&r[1]) {
        Ok(Reply::Value { value, .. }) => assert_eq!(value, b"second"),
        other => panic!("{other:?}"),
    }
    // A Hello naming a lane this node lacks is refused (no slot there), and
    // one naming a generation no server gives is malformed.
    let bogus = Binding { lane: 200, ..b2 };
    assert_eq!(refused_hello(addrs[0], session, bogus), ErrorCode::Busy);
    let bogus = Binding { generation: 0, ..b2 };
    assert_eq!(refused_hello(addrs[0], session, bogus), ErrorCode::Malformed);
    // A fence naming a generation its slot has not reached (a client from
    // before a cluster restart), and one naming the live binding from
    // another client session, are ignored: the connection they name
    // writes on.
    let ahead = Binding {
        generation: b2.generation + 5,
        ..b2
    };
    let (_third, _, _, _) = raw_session(addrs[0], session, Some(ahead));
    let (_fourth, stranger, _, _) = raw_session(addrs[0], 0, Some(b2));
    assert_ne!(stranger, session);
    let r = ask(&mut new, &mut new_buf, &[put(b"third")]);
    assert!(matches!(Reply::decode(&r[0]), Ok(Reply::Written { .. })));
    drop((old, new));
    let outcomes = c.stop();
    assert_no_errors(&outcomes);
    assert_same_digests(&outcomes);
}

/// Sends `reqs` on `s` and reads a reply body for each.
fn ask(s: &mut TcpStream, buf: &mut Vec<u8>, reqs: &[Request<'_>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    reqs.iter().for_each(|r| r.encode(&mut out));
    s.write_all(&out).expect("requests");
    reqs.iter().map(|_| read_reply(s, buf)).collect()
}

/// The error a Hello continuing `session` from `prev` gets.
fn refused_hello(addr: SocketAddr, session: u64, prev: Binding) -> ErrorCode {
    let mut s = connect_raw(addr, 10);
    let hello = Request::Hello {
        session,
        last_zxid: 0,
        prev: Some(prev),
        token: b"",
    };
    match Reply::decode(&ask(&mut s, &mut Vec::new(), &[hello])[0]) {
        Ok(Reply::Error { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
