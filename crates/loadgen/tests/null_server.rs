//! The null server answers the client protocol without storing anything,
//! pipelined and in order, and drops a connection that sends garbage.

use rzab_client::{Client, ClientConfig};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn start() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let s = stop.clone();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let t = std::thread::spawn(move || {
        let ready = move |a| tx.send(a).expect("test alive");
        rzab_loadgen::null_server::serve(any, s, ready).expect("serves");
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("listening");
    (addr, stop, t)
}

#[test]
fn answers_every_request_in_order_and_stops() {
    let (addr, stop, t) = start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let c = Client::connect(ClientConfig::new(vec![addr]))
            .await
            .expect("admitted");
        assert_eq!(c.get(b"k").await, Ok(None));
        assert_eq!(c.put(b"k", b"v").await, Ok(0));
        assert_eq!(c.delete(b"k").await, Ok(Some(false)));
        assert_eq!(c.sync_get(b"k").await, Ok(None));
        let pipelined: Vec<_> = (0..100).map(|_| c.get(b"k")).collect();
        for r in futures_util::future::join_all(pipelined).await {
            assert_eq!(r, Ok(None));
        }
    });
    stop.store(true, Ordering::Relaxed);
    t.join().expect("server thread");
}

#[test]
fn garbage_closes_the_connection() {
    let (addr, stop, t) = start();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // A frame of 3 bytes that is no request.
    s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]).expect("write");
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0)), "closed without an answer");
    // A length prefix past any request closes too (no buffering towards it).
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(&u32::MAX.to_le_bytes()).expect("write");
    assert!(matches!(s.read(&mut buf), Ok(0)), "closed on an oversized prefix");
    stop.store(true, Ordering::Relaxed);
    t.join().expect("server thread");
}
