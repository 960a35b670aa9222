#!/usr/bin/env bash
# The RDMA transport on real verbs: installs what it needs (rdma-deps.sh),
# lints the workspace with the `rdma` feature, then runs the test target
# crates/node/tests/rdma_vm.rs (only it) inside a throw-away VM with three
# Soft-RoCE devices, through scripts/rdma-vm/run-in-vm.sh as the cargo
# runner: endpoints, 3-node clusters over RDMA unicast and multicast beside
# UDP (figures printed), loss repair, hostile datagrams. Debian and root
# only; RZAB_SKIP_RDMA_VM=1 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${RZAB_SKIP_RDMA_VM:-}" ]; then
    echo "== RDMA VM tests skipped (RZAB_SKIP_RDMA_VM is set)"
    exit 0
fi
start=$(date +%s)
echo "== RDMA dependencies and VM image"
scripts/rdma-deps.sh

echo "== cargo clippy --features rdma"
cargo clippy --workspace --all-targets --release --features rzab/rdma -- -D warnings

echo "== RDMA tests in the Soft-RoCE VM (3 devices)"
# The tests fail rather than skip when the VM has no RDMA.
export RZAB_REQUIRE_RDMA=1
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/scripts/rdma-vm/run-in-vm.sh -r 3 -t 480 -e RZAB_REQUIRE_RDMA"
cargo test --release -p rzab-node --features rdma --test rdma_vm -- --nocapture --test-threads=1

echo "== RDMA VM part took $(( $(date +%s) - start )) s"
