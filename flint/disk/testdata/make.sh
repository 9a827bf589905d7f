#!/usr/bin/env bash
# make.sh regenerates the disk fixtures (needs qemu-img, Debian qemu-utils):
# a 128 KiB raw disk with a boot signature, an OSv command line at byte 512
# and a marker at byte 70000, and the same disk as qcow2, plain and
# compressed (deflate and zstd), with 4 KiB clusters.
set -euo pipefail
cd "$(dirname "$0")"
python3 - <<'PY'
b = bytearray(128 << 10)
b[510:512] = b"\x55\xaa"
cmd = b'--env=GREETING=hi /hello.so a "b c"'
b[512:512 + len(cmd)] = cmd
b[70000:70006] = b"marker"
open("raw.img", "wb").write(b)
PY
qemu-img convert -f raw -O qcow2 -o cluster_size=4096 raw.img plain.qcow2
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096 raw.img compressed.qcow2
qemu-img create -q -f qcow2 -o cluster_size=4096 empty.qcow2 1M
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096,compression_type=zstd raw.img zstd.qcow2
