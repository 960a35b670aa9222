#!/usr/bin/env python3
"""Turns scripts/compare.sh's run manifest and loadgen JSON reports into
results.md and the data files that plot.gp draws (standard library only).

usage: report.py MANIFEST OUT_DIR [--title TEXT]
"""

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

# Plot series in this order; a series appears only if it ran.
SERIES_ORDER = [
    ("zookeeper", "tmpfs", 1),
    ("zookeeper", "disk", 1),
    ("etcd", "tmpfs", 1),
    ("etcd", "disk", 1),
    ("rzab", "memory", 1),
    ("rzab", "memory", 64),
    ("ceiling", "none", 1),
    ("ceiling", "none", 64),
]


def load_runs(manifest):
    runs = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            system, storage, ratio, inflight, path, status = line.split("\t")
            report = None
            if status == "ok":
                try:
                    with open(path, encoding="utf-8") as j:
                        report = json.load(j)
                except (OSError, ValueError) as e:
                    print(f"report.py: {path}: {e}", file=sys.stderr)
                    status = "failed"
            runs.append(
                {
                    "system": system,
                    "storage": storage,
                    "ratio": ratio,
                    "inflight": int(inflight),
                    "status": status,
                    "report": report,
                }
            )
    return runs


def lat(report, kind, pct):
    h = report[f"{kind}_latency_us"]
    return h[pct] if h["count"] > 0 else None


def ms(us):
    return None if us is None else us / 1000.0


def pair(report, kind):
    p50, p99 = lat(report, kind, "p50"), lat(report, kind, "p99")
    return "-" if p50 is None else f"{p50:,} / {p99:,}"


def cores(report):
    """The load generator's own CPU over the measured window, in cores."""
    cpu = report.get("loadgen_cpu")
    return "-" if not cpu else f"{cpu['cores']:.2f}"


def package_version(name):
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", name],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def write_markdown(runs, out, title):
    lines = [
        "# rzab, ZooKeeper and etcd on one machine",
        "",
        f"{title}. Three-node clusters on loopback, closed-loop clients spread",
        "round-robin over the nodes. Latencies in microseconds (HDR histograms).",
        "The load generator shares the machine: its own CPU is in the last column.",
        f"ZooKeeper {package_version('zookeeper')} and etcd {package_version('etcd-server')}",
        "(Debian packages); etcd reads are linearizable (its default), ZooKeeper",
        "and rzab reads are served by the node the client is connected to.",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by scripts/compare.sh.",
        "",
        "| system | storage | write ratio | inflight | ops/s | read p50 / p99 (us) "
        "| write p50 / p99 (us) | errors | load generator cores |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        head = f"| {r['system']} | {r['storage']} | {r['ratio']} | {r['inflight']} "
        rep = r["report"]
        if rep is None:
            lines.append(head + "| failed | - | - | - | - |")
            continue
        lines.append(
            head
            + f"| {rep['ops_per_sec']:,.0f} | {pair(rep, 'read')} "
            + f"| {pair(rep, 'write')} | {rep['errors']} | {cores(rep)} |"
        )
    lines.append("")
    lines += ratio_lines(runs)
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def ratio_lines(runs):
    """rzab's throughput over ZooKeeper's (tmpfs) and over the ceiling's, and
    whether its p99 latencies are lower than ZooKeeper's, per workload."""
    ok = {(r["system"], r["storage"], r["ratio"], r["inflight"]): r["report"] for r in runs if r["report"]}
    rows = []
    for (system, storage, ratio, inflight), rep in sorted(ok.items(), key=lambda kv: (kv[0][3], float(kv[0][2]))):
        if system != "rzab":
            continue
        zk = ok.get(("zookeeper", "tmpfs", ratio, inflight))
        ceil = ok.get(("ceiling", "none", ratio, inflight))
        vs_zk = f"{rep['ops_per_sec'] / zk['ops_per_sec']:.1f}x" if zk else "-"
        vs_ceil = f"{100 * rep['ops_per_sec'] / ceil['ops_per_sec']:.0f}%" if ceil else "-"
        p99 = "-"
        if zk:
            lower = []
            for kind in ("read", "write"):
                mine, theirs = lat(rep, kind, "p99"), lat(zk, kind, "p99")
                if mine is not None and theirs is not None:
                    lower.append(f"{kind} {'yes' if mine < theirs else 'no'}")
            p99 = ", ".join(lower) or "-"
        rows.append(f"| {ratio} | {inflight} | {vs_zk} | {p99} | {vs_ceil} |")
    if not rows:
        return []
    return [
        "rzab's throughput against ZooKeeper (tmpfs) and against the ceiling (null",
        "servers: the request path alone, nothing stored):",
        "",
        "| write ratio | inflight | rzab / ZooKeeper | rzab p99 lower than ZooKeeper's | rzab / ceiling |",
        "|---:|---:|---:|---|---:|",
        *rows,
        "",
    ]


def write_plot_data(runs, out):
    """One file per metric: a row per write ratio, a column per series;
    '?' marks a missing value (gnuplot's `set datafile missing`)."""
    present = {(r["system"], r["storage"], r["inflight"]) for r in runs}
    series = [s for s in SERIES_ORDER if s in present]
    series += sorted(present - set(series))
    ratios = sorted({r["ratio"] for r in runs}, key=float)
    by_key = {(r["system"], r["storage"], r["inflight"], r["ratio"]): r["report"] for r in runs}
    metrics = {
        "throughput": lambda rep: rep["ops_per_sec"],
        # Latencies in milliseconds: short axis labels.
        "read_p99": lambda rep: ms(lat(rep, "read", "p99")),
        "write_p99": lambda rep: ms(lat(rep, "write", "p99")),
    }
    plot_dir = os.path.join(out, "plot")
    os.makedirs(plot_dir, exist_ok=True)

    def label(s):
        system, storage, inflight = s
        name = "ceiling (null server)" if system == "ceiling" else f"{system} {storage}"
        return name + (f", {inflight} in flight" if inflight != 1 else "")

    for metric, get in metrics.items():
        with open(os.path.join(plot_dir, f"{metric}.dat"), "w", encoding="utf-8") as f:
            f.write('"write ratio" ' + " ".join(f'"{label(s)}"' for s in series) + "\n")
            for ratio in ratios:
                cells = []
                for s in series:
                    rep = by_key.get((*s, ratio))
                    v = get(rep) if rep is not None else None
                    cells.append("?" if v is None or v <= 0 else f"{v:.4g}")
                f.write(f'"{ratio}" ' + " ".join(cells) + "\n")
    with open(os.path.join(plot_dir, "series.gp"), "w", encoding="utf-8") as f:
        f.write(f"nseries = {len(series)}\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--title", default="Comparison")
    a = p.parse_args()
    runs = load_runs(a.manifest)
    if not runs:
        sys.exit("report.py: the manifest lists no runs")
    write_markdown(runs, a.out, a.title)
    write_plot_data(runs, a.out)


if __name__ == "__main__":
    main()
