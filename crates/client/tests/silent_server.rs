//! A server that admits the session and then never answers: requests in
//! flight fail with ConnectionLost after the reply timeout instead of
//! waiting for ever, and a server that refuses the token is not retried.

mod common;

use rzab_client::protocol::{ErrorCode, Reply, Request, next_frame};
use rzab_client::{Client, ClientConfig, Error};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// Accepts one connection, answers its Hello with `answer`, then reads
/// and ignores everything until the client goes away.
fn fake_server(answer: Reply<'static>) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(Some((body, _))) = next_frame(&buf, 1 << 16) {
                assert!(matches!(Request::decode(body), Ok((Request::Hello { .. }, _))));
                break;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let mut out = Vec::new();
        answer.encode(&mut out);
        let _ = s.write_all(&out);
        while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
    });
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn a_silent_server_fails_requests_after_the_reply_timeout() {
    let addr = fake_server(common::WELCOME);
    runtime().block_on(async {
        let mut cfg = ClientConfig::new(vec![addr]);
        cfg.reply_timeout = Duration::from_millis(400);
        let c = Client::connect(cfg).await.expect("admitted");
        let start = Instant::now();
        assert_eq!(c.get(b"k").await, Err(Error::ConnectionLost));
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    });
}

#[test]
fn a_refused_token_is_reported_not_retried() {
    let addr = fake_server(Reply::Error {
        code: ErrorCode::Unauthorized,
        message: "wrong token",
    });
    runtime().block_on(async {
        let r = Client::connect(ClientConfig::new(vec![addr, addr])).await;
        assert!(
            matches!(
                r,
                Err(Error::Server {
                    code: ErrorCode::Unauthorized,
                    ..
                })
            ),
            "{:?}",
            r.err()
        );
    });
}
