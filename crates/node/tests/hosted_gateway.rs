//! Over UDP, `rzab serve` runs each node's client gateway in its lane's
//! thread by default (`client.threads = 0`, one lane): the lane's sockets
//! and the client connections share one poll loop. Pipelined sessions get the same
//! answers as through a gateway with threads of its own, every node ends
//! with the same state, and no thread of the gateway's own exists.

use rzab_client::{Client, ClientConfig};
use rzab_node::RunConfig;
use rzab_node::cluster::{ClusterFile, TransportSection};
use rzab_node::process::serve_node;
use rzab_node::report::NodeOutcome;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn cluster_file(net: u8, port: u16, lanes: u8, threads: usize) -> ClusterFile {
    let mut cfg = RunConfig {
        interval_s: 3600.0,
        lanes,
        ..RunConfig::default()
    };
    cfg.proto.mtu = 1472;
    // Election timeouts that CI's load does not trip.
    cfg.proto.heartbeat_ms = 20.0;
    cfg.proto.election_timeout_ms = 250.0;
    cfg.clients.slots = 16;
    cfg.clients.threads = threads;
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, net, i + 1), port)))
        .collect();
    let transport = TransportSection {
        multicast_group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 99, net), port + 500),
        ..TransportSection::default()
    };
    let file = ClusterFile::from_run(&cfg, &addrs, transport);
    file.validate().expect("valid cluster file");
    file
}

/// Names of this process's threads that belong to a gateway of its own.
fn gateway_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.ends_with("gw") || c.ends_with("gateway"))
        .collect()
}

/// Serves the cluster in this process while `traffic` runs against its
/// client addresses; returns the threads of gateways seen meanwhile and
/// each node's outcome.
fn serve_while(file: &ClusterFile, traffic: impl FnOnce(Vec<SocketAddr>)) -> (Vec<String>, Vec<NodeOutcome>) {
    let stop = Arc::new(AtomicBool::new(false));
    let nodes: Vec<_> = (0..3u8)
        .map(|id| {
            let (file, stop) = (file.clone(), stop.clone());
            std::thread::spawn(move || serve_node(&file, id, &mut std::io::sink(), &stop))
        })
        .collect();
    traffic(file.client_addrs());
    let threads = gateway_threads();
    stop.store(true, Ordering::Relaxed);
    let outcomes = nodes
        .into_iter()
        .map(|n| n.join().expect("node thread").expect("node ran"))
        .collect();
    (threads, outcomes)
}

/// 8 sessions, each with 40 writes in flight at once and then reads of
/// them all, through every node.
fn pipelined_sessions(addrs: Vec<SocketAddr>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut sessions = tokio::task::JoinSet::new();
        for s in 0..8usize {
            let mut cfg = ClientConfig::new(vec![addrs[s % addrs.len()]]);
            cfg.connect_timeout = Duration::from_secs(10);
            sessions.spawn(async move {
                let c = Arc::new(connect(cfg).await);
                let puts: Vec<_> = (0..40)
                    .map(|i| {
                        let c = c.clone();
                        tokio::spawn(
                            async move { c.put(format!("s{s}k{i}").as_bytes(), &[i as u8; 20]).await },
                        )
                    })
                    .collect();
                for p in puts {
                    p.await.expect("task").expect("put");
                }
                for i in 0..40u8 {
                    let got = c.get(format!("s{s}k{i}").as_bytes()).await.expect("get");
                    assert_eq!(got.map(|v| v.value), Some(vec![i; 20]), "session {s} key {i}");
                }
            });
        }
        while let Some(r) = sessions.join_next().await {
            r.expect("session");
        }
    });
}

/// Connects once the node serves (its gateway starts after its lanes).
async fn connect(cfg: ClientConfig) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(cfg.clone()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("cannot connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn assert_converged(outcomes: &[NodeOutcome]) {
    assert!(
        outcomes.iter().all(|o| o.errors.is_empty()),
        "{:?}",
        outcomes.iter().map(|o| &o.errors).collect::<Vec<_>>()
    );
    let digests: Vec<u64> = outcomes.iter().map(|o| o.digest).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "digests {digests:x?}");
    assert!(outcomes.iter().all(|o| o.applied >= 320), "{outcomes:?}");
}

// One test for both modes: it counts this process's threads.
#[test]
fn gateways_in_the_lane_thread_and_in_their_own_serve_alike() {
    let port = 24_000 + (std::process::id() % 1000) as u16 * 8;
    let (threads, outcomes) = serve_while(&cluster_file(5, port, 1, 0), pipelined_sessions);
    assert_eq!(threads, Vec::<String>::new(), "hosted: no gateway threads");
    assert_converged(&outcomes);

    let (threads, outcomes) = serve_while(&cluster_file(5, port + 4, 1, 1), pipelined_sessions);
    assert_eq!(
        threads.len(),
        6,
        "a runtime thread and a worker per node: {threads:?}"
    );
    assert_converged(&outcomes);

    // With two lanes the gateway keeps threads of its own.
    let (threads, outcomes) = serve_while(&cluster_file(6, port, 2, 0), pipelined_sessions);
    assert_eq!(threads.len(), 6, "two lanes: {threads:?}");
    assert_converged(&outcomes);
}
