#!/usr/bin/env bash
# rzab's test command (README, .ci/run): formatting, lints, every test in a
# release build, then the loom model checks of the concurrent code.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --release --no-fail-fast
    cargo test --workspace --release --doc
else
    cargo test --workspace --release --no-fail-fast
fi

echo "== loom model checks (seqlock, apply gate)"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test --release -p rzab-proto -p rzab-store --test loom

./scripts/test-rdma-vm.sh   # RDMA on real verbs in a Soft-RoCE VM (Debian, root; RZAB_SKIP_RDMA_VM=1 skips)

echo "== all tests passed"
