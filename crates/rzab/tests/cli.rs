//! The `rzab` command line: bad input gets one line and exit code 2; a
//! short bench runs, prints its summary and writes a JSON report.

use std::process::{Command, Output};

fn rzab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rzab"))
        .args(args)
        .output()
        .expect("rzab runs")
}

fn assert_usage_error(args: &[&str], mentions: &str) {
    let out = rzab(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line for {args:?}: {err}");
    assert!(err.contains(mentions), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "nothing ran for {args:?}");
}

#[test]
fn bad_flags_and_values_get_one_line_and_exit_2() {
    assert_usage_error(&["bench", "--no-such-flag"], "--no-such-flag");
    assert_usage_error(&["bench", "--write-ratio", "5"], "fraction");
    assert_usage_error(&["bench", "--write-ratio", "abc"], "not a number");
    assert_usage_error(&["bench", "--nodes", "0"], "--nodes");
    assert_usage_error(&["bench", "--distribution", "pareto"], "pareto");
    assert_usage_error(&["bench", "--duration", "0"], "positive");
    assert_usage_error(&["bench", "--poll", "sometimes"], "adaptive or busy");
    assert_usage_error(
        &["bench", "--broadcast", "carrier-pigeon"],
        "multicast or unicast",
    );
    assert_usage_error(&["bench", "--mtu", "64"], "--mtu");
    assert_usage_error(&["bench", "--window", "100"], "--window");
    assert_usage_error(&["bench", "--value-size", "2"], "--value-size");
    assert_usage_error(
        &["bench", "--trace", "/nonexistent/trace.txt", "--keys", "10"],
        "trace file",
    );
    assert_usage_error(&["frobnicate"], "frobnicate");
    assert_usage_error(&["null-server"], "--listen");
    assert_usage_error(&["null-server", "--listen", "localhost"], "invalid");
}

#[test]
fn a_null_server_that_cannot_listen_says_why() {
    // Port 1 on an address this machine does not have: bind fails.
    let out = rzab(&["null-server", "--listen", "192.0.2.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("null server on 192.0.2.1:1"), "{err}");
}

#[test]
fn help_describes_every_flag() {
    let out = rzab(&["bench", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--nodes",
        "--lanes",
        "--sessions",
        "--write-ratio",
        "--keys",
        "--value-size",
        "--distribution",
        "--duration",
        "--json",
        "--poll",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn a_short_bench_reports_matching_digests_in_json() {
    let dir = std::env::temp_dir().join(format!("rzab-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let out = rzab(&[
        "bench",
        "--nodes",
        "3",
        "--lanes",
        "2",
        "--keys",
        "5000",
        "--write-ratio",
        "0.2",
        "--duration",
        "1",
        "--interval",
        "0.5",
        "--verify",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cluster") && stdout.contains("digests       all match"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["cluster"]["digests_match"], true);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 3);
    assert!(report["cluster"]["rates"]["mops"].as_f64().unwrap() > 0.0);
    assert_eq!(report["config"]["workload"]["write_ratio"], 0.2);
    assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_trace_file_drives_the_sessions() {
    let dir = std::env::temp_dir().join(format!("rzab-trace-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("t.txt");
    std::fs::write(&trace, "r 1\nw 2\nr 3\nw 4\n").unwrap();
    let out = rzab(&[
        "bench",
        "--keys",
        "10",
        "--trace",
        trace.to_str().unwrap(),
        "--ops",
        "2000",
        "--duration",
        "30",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("50% writes") || stdout.contains("writes"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
