#!/usr/bin/env bash
# What the RDMA transport's build and tests need, on Debian (as root):
# cmake and libclang-dev (the `rdma` feature builds sideway's rdma-mummy-sys
# with cmake and bindgen; rdma-core itself is loaded at run time), and the
# Soft-RoCE VM image (scripts/rdma-vm/build-image.sh installs qemu,
# debootstrap, e2fsprogs, cpio and xz-utils). Installs only what is
# missing; builds the image only if it is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for p in cmake libclang-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "rdma-deps: installing ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/rdma-vm/build-image.sh --if-missing
