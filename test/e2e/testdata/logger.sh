#!/bin/sh
# A containerd logging binary (binary:// log URI) for TestOSvLogURI: called as
# `logger.sh dir DIR`, it copies fd 3 (stdout) and fd 4 (stderr) to
# DIR/$CONTAINER_NAMESPACE.$CONTAINER_ID.{out,err}.
exec 5>&- # ready: close the pipe before the copies inherit it
[ "$1" = dir ] || exit 2
base="$2/$CONTAINER_NAMESPACE.$CONTAINER_ID"
cat <&3 >"$base.out" &
cat <&4 >"$base.err" &
wait
touch "$base.done"
