//! `max_inflight` bounds the requests a client has on the wire: more wait
//! their turn and go out in the order issued (a caller that gives up
//! waiting sends nothing), and every one is answered once the server
//! replies.

mod common;

use rzab_client::protocol::{Reply, Request, next_frame};
use rzab_client::{Client, ClientConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A server that admits one session, counts the requests it receives and
/// answers NotFound to as many of them as it is told to.
struct HeldServer {
    addr: std::net::SocketAddr,
    received: Arc<AtomicUsize>,
    /// The keys of the requests received, in order.
    keys: Arc<Mutex<Vec<Vec<u8>>>>,
    release: mpsc::Sender<usize>,
}

fn held_server() -> HeldServer {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let received = Arc::new(AtomicUsize::new(0));
    let keys = Arc::new(Mutex::new(Vec::new()));
    let (release, releases) = mpsc::channel::<usize>();
    let (count, seen) = (received.clone(), keys.clone());
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let Ok(mut w) = s.try_clone() else { return };
        std::thread::spawn(move || answer_when_told(&mut w, &releases));
        count_requests(&mut s, &count, &seen);
    });
    HeldServer {
        addr,
        received,
        keys,
        release,
    }
}

fn count_requests(s: &mut TcpStream, count: &AtomicUsize, keys: &Mutex<Vec<Vec<u8>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut start = 0;
        while let Ok(Some((body, used))) = next_frame(&buf[start..], 1 << 16) {
            match Request::decode(body) {
                Ok((Request::Hello { .. }, _)) => {
                    let mut out = Vec::new();
                    common::WELCOME.encode(&mut out);
                    let _ = s.write_all(&out);
                }
                Ok((Request::Get { key }, _)) => {
                    keys.lock().expect("keys").push(key.to_vec());
                    count.fetch_add(1, Ordering::SeqCst);
                }
                other => panic!("unexpected request: {other:?}"),
            }
            start += used;
        }
        buf.drain(..start);
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn answer_when_told(w: &mut TcpStream, releases: &mpsc::Receiver<usize>) {
    while let Ok(n) = releases.recv() {
        let mut out = Vec::new();
        for _ in 0..n {
            Reply::NotFound { zxid: 0 }.encode(&mut out);
        }
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

/// Waits (bounded) until the server has received `n` requests, then a
/// little longer to see that no more arrive.
async fn settles_at(received: &AtomicUsize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(received.load(Ordering::SeqCst), n);
}

async fn bounded_client(server: &HeldServer, max_inflight: usize) -> Client {
    let mut cfg = ClientConfig::new(vec![server.addr]);
    cfg.max_inflight = max_inflight;
    Client::connect(cfg).await.expect("admitted")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn requests_past_max_inflight_wait_for_replies() {
    let server = held_server();
    runtime().block_on(async {
        let c = bounded_client(&server, 2).await;
        // One task polls the calls in order: they are issued in order.
        let calls = tokio::spawn({
            let c = c.clone();
            async move {
                let keys: Vec<String> = (0..5).map(|i| format!("k{i}")).collect();
                futures_util::future::join_all(keys.iter().map(|k| c.get(k.as_bytes()))).await
            }
        });
        settles_at(&server.received, 2).await;
        server.release.send(1).expect("server");
        settles_at(&server.received, 3).await;
        server.release.send(2).expect("server");
        settles_at(&server.received, 5).await;
        server.release.send(2).expect("server");
        for r in calls.await.expect("task") {
            assert_eq!(r, Ok(None));
        }
        let keys = server.keys.lock().expect("keys").clone();
        let issued: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i}").into_bytes()).collect();
        assert_eq!(keys, issued, "sent in the order issued");
    });
}

#[test]
fn a_caller_that_gives_up_waiting_leaves_no_trace() {
    let server = held_server();
    runtime().block_on(async {
        let c = bounded_client(&server, 1).await;
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.get(b"a").await }
        });
        settles_at(&server.received, 1).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(100), c.get(b"b")).await;
        assert!(gave_up.is_err(), "the second call should still be waiting");
        server.release.send(1).expect("server");
        assert_eq!(first.await.expect("task"), Ok(None));
        // The abandoned call was never sent; the next one goes out alone.
        let third = tokio::spawn({
            let c = c.clone();
            async move { c.get(b"c").await }
        });
        settles_at(&server.received, 2).await;
        server.release.send(1).expect("server");
        assert_eq!(third.await.expect("task"), Ok(None));
    });
}
