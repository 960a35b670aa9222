//! Real clusters of `rzab node` processes over UDP on loopback (and in
//! network namespaces when root): digests match, start order does not
//! matter, and no child outlives the bench, on Ctrl-C or when one dies.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn rzab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rzab"))
}

fn run_json(args: &[&str]) -> (Output, serde_json::Value) {
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("rzab-udp-test-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = rzab().args(args).arg("--json").arg(&json).output().unwrap();
    let report = std::fs::read_to_string(&json)
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (out, report)
}

fn assert_ok(out: &Output, report: &serde_json::Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["cluster"]["digests_match"], true, "{text}");
    assert_eq!(report["cluster"]["histories_match"], true, "{text}");
    assert!(
        report["cluster"]["writes_completed"].as_u64().unwrap() > 100,
        "{text}"
    );
    assert!(report["transport"].as_str().unwrap().starts_with("udp"), "{text}");
}

#[test]
fn three_processes_over_multicast_agree() {
    let (out, report) = run_json(&[
        "bench",
        "--transport",
        "udp",
        "--duration",
        "1.5",
        "--keys",
        "5000",
        "--write-ratio",
        "0.3",
    ]);
    assert_ok(&out, &report);
    assert!(report["transport"].as_str().unwrap().contains("multicast"));
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    // Followers received the leader's Prepares through the group.
    assert!(nodes[1]["proto"]["prepares_recv"].as_u64().unwrap() > 0);
}

#[test]
fn nodes_started_in_reverse_order_over_unicast_with_two_lanes_agree() {
    let (out, report) = run_json(&[
        "bench",
        "--transport",
        "udp",
        "--broadcast",
        "unicast",
        "--lanes",
        "2",
        "--duration",
        "1.5",
        "--keys",
        "5000",
        "--stagger-ms",
        "300",
    ]);
    assert_ok(&out, &report);
}

#[test]
fn nodes_in_network_namespaces_agree_when_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !ip {
        eprintln!("skipped: needs root and iproute2 (root {root}, ip {ip})");
        return;
    }
    let spaces = || {
        let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let before = spaces();
    let args = [
        "bench",
        "--transport",
        "udp",
        "--netns",
        "--duration",
        "1.5",
        "--keys",
        "5000",
    ];
    let (out, report) = run_json(&args);
    assert_ok(&out, &report);
    assert!(report["transport"].as_str().unwrap().contains("namespaces"));
    let after = spaces();
    let left: Vec<&str> = after
        .lines()
        .filter(|l| l.starts_with("rzab") && !before.contains(*l))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// PIDs of node processes started by the bench with this PID.
fn children_of(parent: u32) -> Vec<u32> {
    let tag = format!("rzab-bench-{parent}/");
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(&tag) {
            pids.push(pid);
        }
    }
    pids
}

fn start_long_bench() -> Child {
    rzab()
        .args([
            "bench",
            "--transport",
            "udp",
            "--duration",
            "60",
            "--keys",
            "5000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exit_within(parent: &mut Child, limit: Duration) -> i32 {
    let start = Instant::now();
    loop {
        if let Some(s) = parent.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if start.elapsed() > limit {
            let _ = parent.kill();
            panic!("the bench did not stop within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_every_child() {
    let mut parent = start_long_bench();
    wait_for("three children", Duration::from_secs(30), || {
        children_of(parent.id()).len() == 3
    });
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling a process this test started.
    unsafe { libc::kill(parent.id() as i32, libc::SIGINT) };
    let code = exit_within(&mut parent, Duration::from_secs(30));
    assert_ne!(code, 0, "an interrupted run is not a success");
    wait_for("no orphans", Duration::from_secs(5), || {
        children_of(parent.id()).is_empty()
    });
}

#[test]
fn a_dying_child_stops_the_run_and_the_others() {
    let mut parent = start_long_bench();
    wait_for("three children", Duration::from_secs(30), || {
        children_of(parent.id()).len() == 3
    });
    std::thread::sleep(Duration::from_millis(1500));
    let victim = children_of(parent.id())[0];
    // SAFETY: killing a process this test's bench started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let code = exit_within(&mut parent, Duration::from_secs(30));
    assert_ne!(code, 0);
    wait_for("no orphans", Duration::from_secs(5), || {
        children_of(parent.id()).is_empty()
    });
}

#[test]
fn a_bad_cluster_file_names_the_field() {
    let dir = std::env::temp_dir().join(format!("rzab-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    let cases = [
        (
            "cluster_id = 1\n[[nodes]]\nid = 0\naddress = \"127.0.0.1:0\"\n",
            "nodes[0].address",
        ),
        (
            "cluster_id = 1\nlanes = 1\n[workload]\nwrite_ratio = 7.0\n[[nodes]]\nid = 0\naddress = \"127.0.0.1:9000\"\n",
            "workload.write_ratio",
        ),
        (
            "cluster_id = 1\nlanez = 2\n[[nodes]]\nid = 0\naddress = \"127.0.0.1:9000\"\n",
            "lanez",
        ),
        ("cluster_id = \"one\"\n", "cluster_id"),
    ];
    for (text, field) in cases {
        std::fs::write(&path, text).unwrap();
        let out = rzab()
            .args(["node", "--config", path.to_str().unwrap(), "--id", "0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(field), "{text}: {err}");
    }
    let out = rzab()
        .args(["node", "--config", "/nonexistent.toml", "--id", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_net_measures_the_loopback() {
    let out = rzab()
        .args(["bench-net", "--seconds", "0.2", "--sizes", "64,1472"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1472") && text.to_lowercase().contains("gso"),
        "{text}"
    );
}

/// Kills the leader's process with SIGKILL under load, then restarts it:
/// a new leader takes over, the restarted node catches up from a
/// snapshot, and every replica ends with the same store.
#[test]
fn killing_the_leader_fails_over_and_the_restarted_node_catches_up() {
    let (out, report) = run_json(&[
        "bench",
        "--transport",
        "udp",
        "--duration",
        "4",
        "--keys",
        "20000",
        "--write-ratio",
        "0.2",
        "--nodes",
        "3",
        "--kill",
        "leader@1s",
        "--restart",
        "@2s",
    ]);
    assert_ok(&out, &report);
    let text = String::from_utf8_lossy(&out.stdout);
    let f = &report["faults"];
    let kill = &f["kills"][0];
    assert_eq!(kill["was_leader"], true, "{text}");
    let new_leader = kill["new_leader"].as_u64().expect("a new leader");
    assert_ne!(new_leader, kill["node"].as_u64().unwrap(), "{text}");
    assert!(kill["new_epoch"].as_u64().unwrap() >= 2, "{text}");
    // Loose bounds: the machine is shared; the figures are in the report.
    let failover = kill["failover_ms"].as_f64().expect("the new epoch committed");
    assert!(failover > 0.0 && failover < 2_000.0, "{text}");
    let restart = &f["restarts"][0];
    assert!(
        restart["caught_up_ms"].as_f64().is_some(),
        "the restarted node caught up: {text}"
    );
    assert_eq!(restart["snapshot_keys"].as_u64(), Some(20_000), "{text}");
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "the restarted node reported: {text}");
    assert!(nodes.iter().any(|n| n["rejoined"] == true), "{text}");
    assert!(text.contains("kill          node"), "{text}");
}

#[test]
fn a_killed_follower_is_not_waited_for() {
    let (out, report) = run_json(&[
        "bench",
        "--transport",
        "udp",
        "--duration",
        "2.5",
        "--keys",
        "5000",
        "--kill",
        "follower@1s",
    ]);
    assert_ok(&out, &report);
    let kill = &report["faults"]["kills"][0];
    assert_eq!(kill["was_leader"], false);
    assert_eq!(
        report["nodes"].as_array().unwrap().len(),
        2,
        "the dead node does not report"
    );
}

#[test]
fn crash_schedules_are_checked() {
    let bad = |args: &[&str]| {
        let out = rzab().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(bad(&["bench", "--kill", "leader@1s"]).contains("--transport udp"));
    assert!(
        bad(&[
            "bench",
            "--transport",
            "udp",
            "--duration",
            "2",
            "--kill",
            "leader@5s"
        ])
        .contains("within the run")
    );
    assert!(bad(&["bench", "--transport", "udp", "--kill", "boss@1s"]).contains("node id"));
    assert!(bad(&["bench", "--transport", "udp", "--restart", "8"]).contains("unit"));
}
