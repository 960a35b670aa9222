#!/usr/bin/env bash
# rzab's test command (README, .ci/run): formatting, lints, every test in a
# release build, then the loom model checks of the concurrent code.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== cargo clippy --features compare (ZooKeeper and etcd back-ends of loadgen)"
# etcd-client's build needs protoc: install Debian's when missing (as
# scripts/compare.sh does); without apt-get or root, say so and skip.
if ! command -v protoc >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends protobuf-compiler >/dev/null
fi
if command -v protoc >/dev/null; then
    cargo clippy -p rzab -p rzab-loadgen --all-targets --release --features rzab/compare,rzab-loadgen/compare -- -D warnings
else
    echo "   skipped: no protoc and no way to install it here"
fi

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --no-fail-fast
    cargo test --workspace --release --doc
else
    cargo test --workspace --release --no-fail-fast
fi

echo "== loom model checks (seqlock, apply gate, doorbell)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test --release -p rzab-proto -p rzab-store -p rzab-transport --test loom

./scripts/test-rdma-vm.sh   # RDMA on real verbs in a Soft-RoCE VM (Debian, root; RZAB_SKIP_RDMA_VM=1 skips)

echo "== all tests passed"
