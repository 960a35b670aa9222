//! `rzab serve` processes with a real client: a session survives its
//! leader's death (election) and its own replica's death (it moves to
//! another replica and reads what it wrote there), and the CLI commands.

use rzab_client::blocking::Client;
use rzab_client::{ClientConfig, Error};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rzab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rzab"))
}

/// The three server processes; killed (by PID) when dropped.
struct Servers {
    file: PathBuf,
    children: Vec<Option<Child>>,
}

impl Servers {
    fn start(dir: &Path, port: u16) -> Servers {
        let file = dir.join("cluster.toml");
        // Node 0 leads epoch 1 and the test kills it as "the leader": the
        // default 25 ms election timeout let a loaded CI machine (tests in
        // parallel) starve heartbeats and move the lead before that, so
        // spurious elections are made unlikely here.
        let mut text = String::from(
            "cluster_id = 11\nlanes = 1\n\n[protocol]\nheartbeat_ms = 20.0\nelection_timeout_ms = 250.0\n\n[client]\nslots = 8\n",
        );
        for i in 0..3 {
            text += &format!("\n[[nodes]]\nid = {i}\naddress = \"127.0.5.{}:{port}\"\n", i + 1);
        }
        std::fs::write(&file, text).expect("cluster file");
        let mut s = Servers {
            file,
            children: Vec::new(),
        };
        for i in 0..3 {
            let c = s.spawn(i);
            s.children.push(Some(c));
        }
        s
    }

    fn spawn(&self, id: u8) -> Child {
        rzab()
            .args(["serve", "--config"])
            .arg(&self.file)
            .args(["--id", &id.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rzab serve")
    }

    fn kill(&mut self, id: usize) {
        if let Some(mut c) = self.children[id].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self, id: usize) {
        self.kill(id);
        self.children[id] = Some(self.spawn(id as u8));
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

fn client_addr(id: usize, port: u16) -> SocketAddr {
    // The default client port: the one after the lane and control ports.
    SocketAddr::from(([127, 0, 5, id as u8 + 1], port + 2))
}

/// Retries `f` on errors a fail-over explains, for at most `limit`.
fn retry<T>(limit: Duration, mut f: impl FnMut() -> Result<T, Error>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if start.elapsed() < limit => {
                eprintln!("retrying after: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("still failing after {limit:?}: {e}"),
        }
    }
}

#[test]
fn a_session_survives_its_leader_and_its_replica() {
    let port = 24_000 + (std::process::id() % 500) as u16 * 8;
    let dir = std::env::temp_dir().join(format!("rzab-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut servers = Servers::start(&dir, port);
    let long = Duration::from_secs(20);
    // Node 1 first; nodes 2 and 0 are where the session may move.
    let addrs = vec![client_addr(1, port), client_addr(2, port), client_addr(0, port)];
    let client = retry(long, || {
        let mut cfg = ClientConfig::new(addrs.clone());
        cfg.connect_timeout = Duration::from_secs(2);
        Client::connect(cfg)
    });
    let put = |v: &str| retry(long, || client.put(b"k", v.as_bytes()));
    let z1 = put("v1");
    // The leader dies: the cluster elects another and the session goes on
    // at its own replica.
    servers.kill(0);
    let z2 = put("v2");
    assert!(
        z2 > z1 && z2 >> 32 > z1 >> 32,
        "a later epoch: {z1:#x} then {z2:#x}"
    );
    // The old leader comes back empty and catches up as a learner.
    servers.restart(0);
    std::thread::sleep(Duration::from_millis(500));
    // The session's own replica dies: it moves on and reads its write.
    servers.kill(1);
    let z3 = put("v3");
    assert!(z3 > z2);
    let got = retry(long, || client.get(b"k")).expect("present");
    assert_eq!(got.value, b"v3");
    assert_ne!(client.inner().node(), 1);
    assert!(client.last_zxid() >= z3);
    // The CLI reads the same through the cluster file.
    let out = rzab()
        .args(["get", "--sync", "--cluster"])
        .arg(&servers.file)
        .arg("k")
        .output()
        .expect("rzab get");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v3");
    let out = rzab()
        .args(["put", "--cluster"])
        .arg(&servers.file)
        .arg("k")
        .output()
        .expect("rzab put");
    assert_eq!(out.status.code(), Some(2), "put without a value is a usage error");
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}
