//! `rzab node` with `transport.kind = "rdma"` where RDMA cannot run (a build
//! without the `rdma` feature, no rdma-core, or no device): one line that
//! says why and suggests the UDP transport, exit code 1, no crash. (Where
//! RDMA runs, the Soft-RoCE VM tests in crates/node/tests/rdma_vm.rs cover it.)

use std::process::Command;

const FILE: &str = r#"
cluster_id = 7

[transport]
kind = "rdma"

[rdma]
device = "mlx5_0"

[[nodes]]
id = 0
address = "127.0.0.1:27100"

[[nodes]]
id = 1
address = "127.0.0.2:27100"
rdma_device = "mlx5_1"
"#;

fn node(args: &[&str]) -> (Option<i32>, String) {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("rzab-rdma-cli-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("cluster.toml");
    std::fs::write(&path, FILE).expect("cluster file");
    let out = Command::new(env!("CARGO_BIN_EXE_rzab"))
        .args([
            "node",
            "--config",
            path.to_str().expect("utf-8 path"),
            "--id",
            "0",
        ])
        .args(args)
        .output()
        .expect("rzab runs");
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_rdma_a_node_says_so_in_one_line_and_suggests_udp() {
    if let Ok(devices) = rzab_transport::rdma::probe() {
        eprintln!("SKIPPED: RDMA devices are present ({devices:?})");
        return;
    }
    let (code, err) = node(&["--rdma-device", "rxe0", "--rdma-gid-index", "1"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("transport.kind = \"udp\""), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_rdma_flags_are_usage_errors() {
    let (code, err) = node(&["--rdma-port", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--rdma-port"), "{err}");
}
