#!/usr/bin/env bash
# build.sh builds the images of Feather's OSv-protocol test guest into
# _output/guest (see README.md): it downloads Debian's cloud kernel package
# with apt-get download, builds guest-init (static) and mkguest, and runs
# mkguest. Run it as `make guest` from the repository root.
#
# It is cached: the stamp file _output/guest/.stamp holds a key of every
# input (kernel package version, the Go sources that go into the images, Go
# and Debian tool versions); when it matches and the images exist, it does
# nothing. The kernel package is kept in _output/guest/cache.
set -euo pipefail

# Bump when the recipe below changes, so the stamp goes stale.
RECIPE=1
# The metapackage whose dependency names the kernel to use.
KERNEL_META=linux-image-cloud-amd64
# Debian packages whose programs and files mkguest uses.
TOOL_PACKAGES=(syslinux syslinux-common mtools dosfstools qemu-utils)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/_output/guest
CACHE=$OUT/cache
STAMP=$OUT/.stamp
IMAGES=("$OUT/testguest-direct.oci.tar" "$OUT/testguest-disk.oci.tar")

say() { printf 'guest: %s\n' "$*"; }
die() { printf 'make guest: %s\n' "$*" >&2; exit 1; }
# Any other failing command names itself: the step, its line and its status.
set -E
trap 'rc=$?; die "step failed (exit $rc) at build.sh line $LINENO: $BASH_COMMAND"' ERR

for c in go apt-cache apt-get dpkg-deb dpkg-query sha256sum; do
	command -v "$c" >/dev/null 2>&1 || die "$c not found: the test guest is built on Debian 12 with Go; fix: run make deps"
done

# The kernel: the package the metapackage depends on, at its candidate version.
# apt-cache's output is read whole before it is searched: a reader that stops
# early (awk's exit, grep -q, head) would kill apt-cache with SIGPIPE, which
# pipefail turns into a failure of the whole script.
depends=$(apt-cache depends "$KERNEL_META" 2>&1) ||
	die "apt-cache depends $KERNEL_META failed: $depends; fix: apt-get update (Debian 12 main must be in the apt sources)"
KPKG=
while read -r field value _; do
	if [[ $field == Depends: && $value == linux-image-* ]]; then
		KPKG=$value
		break
	fi
done <<<"$depends"
[[ -n $KPKG ]] || die "cannot resolve $KERNEL_META to a kernel package; fix: apt-get update (Debian 12 main must be in the apt sources)"
show=$(apt-cache show --no-all-versions "$KPKG" 2>&1) ||
	die "apt-cache show $KPKG failed: $show; fix: apt-get update"
KVER=
while read -r field value _; do
	if [[ $field == Version: ]]; then
		KVER=$value
		break
	fi
done <<<"$show"
[[ -n $KVER ]] || die "no version of $KPKG known to apt; fix: apt-get update"

# The key: everything that goes into the images.
src_sum() {
	(cd "$ROOT" && find shim-osv/testguest ocilayout vmimage osv -name '*.go' ! -name '*_test.go' ! -path '*/testdata/*' -print0 |
		sort -z | xargs -0 cat go.mod go.sum shim-osv/testguest/build.sh | sha256sum | cut -d' ' -f1)
}
TOOLS=$(dpkg-query -W -f='${Package}=${Version} ' "${TOOL_PACKAGES[@]}" 2>/dev/null) ||
	die "missing Debian packages among ${TOOL_PACKAGES[*]}; fix: run make deps"
KEY="recipe=$RECIPE kernel=$KPKG=$KVER src=$(src_sum) go=$(cd "$ROOT" && go env GOVERSION) tools=$TOOLS"

ok=1
for f in "${IMAGES[@]}"; do [[ -f $f ]] || ok=0; done
if ((ok)) && [[ -f $STAMP && "$(<"$STAMP")" == "$KEY" ]]; then
	say "test guest images up to date"
	exit 0
fi

start=$SECONDS
mkdir -p "$CACHE"
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

deb=$CACHE/${KPKG}_${KVER//:/%3a}_amd64.deb
if [[ ! -f $deb ]]; then
	say "downloading $KPKG $KVER …"
	(cd "$WORK" && apt-get download -o APT::Sandbox::User=root "$KPKG=$KVER") ||
		die "apt-get download $KPKG=$KVER failed (see output above); fix: apt-get update and rerun make guest"
	find "$CACHE" -name 'linux-image-*.deb' -delete
	mv "$WORK"/*.deb "$deb"
fi
dpkg-deb -x "$deb" "$WORK/kernel" || die "unpacking $deb failed; fix: rm $deb and rerun make guest"

say "building guest-init and mkguest …"
gobuild=(env GOFLAGS=-buildvcs=false GOWORK=off CGO_ENABLED=0 go build -trimpath)
(cd "$ROOT" && "${gobuild[@]}" -ldflags "-s -w" -o "$WORK/guest-init" ./shim-osv/testguest/cmd/guest-init &&
	"${gobuild[@]}" -o "$WORK/mkguest" ./shim-osv/testguest/cmd/mkguest) ||
	die "go build failed (see output above)"

rm -f "$STAMP"
"$WORK/mkguest" -kernel-dir "$WORK/kernel" -init "$WORK/guest-init" -out "$OUT" ||
	die "mkguest failed (see output above)"
printf '%s\n' "$KEY" >"$STAMP"
say "built test guest images in $((SECONDS - start))s: ${IMAGES[*]#"$ROOT"/}"
