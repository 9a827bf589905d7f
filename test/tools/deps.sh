#!/usr/bin/env bash
# deps.sh installs what Feather's tests need on a Debian 12 machine: Debian
# packages (QEMU, runc, CNI plugins, …) and pinned third-party programs built
# from the Go module proxy into _output/bin (containerd, the Kubernetes control
# plane, kubelet, etcd, CoreDNS, metrics-server, an OCI registry, crictl). Run it as `make deps` from the repository root.
#
#   deps.sh        everything the tests need (make deps, make test)
#   deps.sh up     only what make up's cluster runs (no kubelet, no crictl)
#   deps.sh conformance  only the upstream e2e suite, _output/bin/e2e.test, with
#                  the ginkgo CLI and agnhost (make conformance; big, so plain
#                  make deps does not build it)
#
# It is idempotent: a group of binaries is rebuilt only when its stamp file
# _output/bin/.stamp-<group> does not hold the group's current key or one of
# its binaries is missing. Each group builds into a temporary directory and is
# moved into _output/bin only once the whole group built, so _output/bin never
# holds a half-built group.
set -euo pipefail

# Pinned versions. containerd's version is not here on purpose: it is read
# from the root go.mod, the single source of truth. The control plane and etcd
# are pinned by test/tools/go.mod, CoreDNS by test/tools/coredns/go.mod,
# metrics-server by test/tools/metrics-server/go.mod.
REGISTRY_VERSION=v3.1.2
CRICTL_VERSION=v1.37.0
GO_MIN=1.26
# Bump when the build recipe below changes, so every stamp goes stale.
RECIPE=1

DEB_PACKAGES=(qemu-system-x86 qemu-utils runc containernetworking-plugins iptables iproute2 busybox-static syslinux syslinux-common mtools dosfstools)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/_output
BIN=$OUT/bin

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'make deps: %s\n' "$*" >&2; exit 1; }
# Any other failing command names itself: the step, its line and its status.
set -E
trap 'rc=$?; die "step failed (exit $rc) at deps.sh line $LINENO: $BASH_COMMAND"' ERR

# ---------------------------------------------------------------- Go toolchain
check_go() {
	command -v go >/dev/null 2>&1 ||
		die "go not found on PATH; fix: install Go >= $GO_MIN from https://go.dev/dl/ and add its bin/ to PATH"
	GOVERSION=$(cd "$ROOT" && go env GOVERSION)
	local v=${GOVERSION#go} major minor
	major=${v%%.*}
	minor=${v#*.}
	minor=${minor%%[!0-9]*}
	if [[ ! $major =~ ^[0-9]+$ || ! $minor =~ ^[0-9]+$ ]] ||
		((major < ${GO_MIN%%.*} || (major == ${GO_MIN%%.*} && minor < ${GO_MIN#*.}))); then
		die "Go $GOVERSION is too old, need >= $GO_MIN; fix: install a newer Go from https://go.dev/dl/"
	fi
}

# ------------------------------------------------------------- Debian packages
# The status is read whole, not piped into grep -q: a reader that stops early
# kills the writer with SIGPIPE, which pipefail reports as a failure.
installed() {
	local status
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[[ $status == 'install ok installed' ]]
}

deb_packages() {
	command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: Feather's tests need Debian 12"
	local missing=() p
	for p in "${DEB_PACKAGES[@]}"; do
		installed "$p" || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		say "Debian packages up to date"
	else
		if ((EUID != 0)); then
			die "missing Debian packages: ${missing[*]}; fix: run make deps as root, or install them by hand: apt-get install ${missing[*]}"
		fi
		say "installing Debian packages: ${missing[*]}"
		if ! apt-get update || ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"; then
			die "installing ${missing[*]} failed (see output above); fix: run apt-get update; apt-get install ${missing[*]} by hand and read its error"
		fi
	fi

	# The files the project uses, and the package that provides each.
	local f pkg bad=0
	while read -r f pkg; do
		if [[ $f == /* ]]; then
			[[ -x $f ]] && continue
		else
			command -v "$f" >/dev/null 2>&1 || [[ -x /usr/sbin/$f || -x /sbin/$f ]] && continue
		fi
		printf 'make deps: %s is missing (Debian package %s); fix: apt-get install --reinstall %s\n' "$f" "$pkg" "$pkg" >&2
		bad=1
	done <<-'EOF'
		qemu-system-x86_64 qemu-system-x86
		qemu-img qemu-utils
		qemu-io qemu-utils
		runc runc
		/usr/lib/cni/bridge containernetworking-plugins
		/usr/lib/cni/host-local containernetworking-plugins
		/usr/lib/cni/portmap containernetworking-plugins
		/usr/lib/qemu/virtiofsd qemu-system-common
		/bin/busybox busybox-static
		ip iproute2
		tc iproute2
		iptables iptables
		syslinux syslinux
		mcopy mtools
		mkfs.fat dosfstools
	EOF
	((bad == 0)) || exit 1
}

# ------------------------------------------------------------ pinned Go tools
TMPS=() HEARTBEATS=()
cleanup() {
	((${#HEARTBEATS[@]} == 0)) || kill "${HEARTBEATS[@]}" 2>/dev/null || true
	((${#TMPS[@]} == 0)) || rm -rf "${TMPS[@]}"
}
trap cleanup EXIT

# What to build: "all" (default) or "up".
TARGET=${1:-all}
[[ $TARGET =~ ^(all|up|conformance)$ ]] || die "unknown target $TARGET; usage: deps.sh [up|conformance]"
# wanted GROUP: whether TARGET needs GROUP (make up runs no kubelet, no crictl;
# only make conformance builds the e2e suite, and it builds nothing else).
wanted() {
	case $TARGET in
	conformance) [[ $1 == conformance ]] ;;
	all) [[ $1 != conformance ]] ;;
	up) [[ ! $1 =~ ^(kubelet|crictl|conformance)$ ]] ;;
	esac
}

# heartbeat LABEL: prints every 30 s how long LABEL has been building, so a
# long build shows it is alive; killed by group when the build ends.
heartbeat() {
	local start=$SECONDS
	while sleep 30; do
		say "… still building $1: $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s"
	done
}

# Builds run with a fixed environment so that the caller's GOFLAGS (-mod=…,
# -buildvcs, …), a go.work or cross-compilation settings cannot change them.
gobuild_env=(env GOFLAGS=-buildvcs=false GOWORK=off CGO_ENABLED=0)

# group NAME KEY LABEL FIX BINARY... -- COMMAND...
# COMMAND runs with $T set to the temporary directory it must build into.
group() {
	local name=$1 key=$2 label=$3 fix=$4
	shift 4
	local bins=()
	while [[ $1 != -- ]]; do bins+=("$1"); shift; done
	shift
	local stamp=$BIN/.stamp-$name b ok=1
	for b in "${bins[@]}"; do [[ -x $BIN/$b ]] || ok=0; done
	if ((ok)) && [[ -f $stamp && "$(<"$stamp")" == "$key" ]]; then
		say "$label up to date"
		return
	fi
	if ! wanted "$name"; then
		if [[ $name == conformance ]]; then
			say "$label skipped (only make deps-conformance builds it)"
		else
			say "$label skipped (not needed for make $TARGET)"
		fi
		return
	fi
	say "building $label (${bins[*]}) …"
	mkdir -p "$BIN"
	T=$(mktemp -d "$OUT/.build-$name.XXXXXX")
	TMPS+=("$T")
	local start=$SECONDS hb
	heartbeat "$label" &
	hb=$!
	HEARTBEATS+=("$hb")
	if ! "$@"; then
		die "building $name failed (see output above); fix: $fix"
	fi
	kill "$hb" 2>/dev/null || true
	for b in "${bins[@]}"; do
		[[ -x $T/$b ]] || die "building $name failed: $b was not produced; fix: $fix"
	done
	rm -f "$stamp"
	for b in "${bins[@]}"; do mv -f "$T/$b" "$BIN/$b"; done
	printf '%s\n' "$key" >"$T/.stamp" && mv -f "$T/.stamp" "$stamp"
	rm -rf "$T"
	say "built $label in $((SECONDS - start))s"
}

build_containerd() {
	GOBIN=$T "${gobuild_env[@]}" go install -trimpath -ldflags "-s -w" \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
}

build_kube() {
	(cd "$ROOT/test/tools" && "${gobuild_env[@]}" go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$KUBE_MAJOR -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR" \
		-o "$T/" ./etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
		k8s.io/kubernetes/cmd/kube-proxy)
}

# The kubelet is a build of its own (only tests of a stock kubelet node run
# it); it shares every package the control plane's build compiled through the
# Go build cache.
build_kubelet() {
	(cd "$ROOT/test/tools" && "${gobuild_env[@]}" go build -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$KUBE_MAJOR -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR" \
		-o "$T/" k8s.io/kubernetes/cmd/kubelet)
}

# The upstream e2e suite is a test binary: go test -c of k8s.io/kubernetes/test/e2e,
# pinned by test/tools/conformance/go.mod to the control plane's version; with it
# the ginkgo CLI that runs it in parallel processes, and agnhost and nonewprivs,
# the programs of the suite's agnhost and nonewprivs images (static: CGO_ENABLED=0).
build_conformance() {
	(cd "$ROOT/test/tools/conformance" && "${gobuild_env[@]}" go test -c -trimpath \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$KUBE_MAJOR -X k8s.io/component-base/version.gitMinor=$KUBE_MINOR" \
		-o "$T/e2e.test" k8s.io/kubernetes/test/e2e &&
		"${gobuild_env[@]}" go build -trimpath -ldflags "-s -w" -o "$T/" \
			github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost k8s.io/kubernetes/test/images/nonewprivs)
}

build_coredns() {
	(cd "$ROOT/test/tools/coredns" && "${gobuild_env[@]}" go build -trimpath -ldflags "-s -w" -o "$T/coredns" .)
}

build_metrics_server() {
	(cd "$ROOT/test/tools/metrics-server" && "${gobuild_env[@]}" go build -trimpath -ldflags "-s -w" \
		-o "$T/" sigs.k8s.io/metrics-server/cmd/metrics-server)
}

build_crictl() {
	GOBIN=$T "${gobuild_env[@]}" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

build_registry() {
	GOBIN=$T "${gobuild_env[@]}" go install -trimpath -ldflags "-s -w" \
		"github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
}

go_tools() {
	local fixnet="check that the Go module proxy is reachable (go env GOPROXY) and the pinned version exists, then rerun make deps"

	CONTAINERD_VERSION=$(cd "$ROOT" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f '{{.Version}}' github.com/containerd/containerd/v2) ||
		die "cannot read containerd's version from go.mod (see output above); fix: require it in the root go.mod (go get github.com/containerd/containerd/v2@vX.Y.Z)"
	group containerd "recipe=$RECIPE containerd=$CONTAINERD_VERSION go=$GOVERSION" "containerd $CONTAINERD_VERSION" "$fixnet" \
		containerd ctr containerd-shim-runc-v2 -- build_containerd

	KUBE_VERSION=$(cd "$ROOT/test/tools" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f '{{.Version}}' k8s.io/kubernetes) ||
		die "cannot read k8s.io/kubernetes's version from test/tools/go.mod (see output above); fix: cd test/tools && go mod tidy"
	[[ $KUBE_VERSION =~ ^v([0-9]+)\.([0-9]+)\. ]] || die "unexpected k8s.io/kubernetes version $KUBE_VERSION in test/tools/go.mod"
	KUBE_MAJOR=${BASH_REMATCH[1]} KUBE_MINOR=${BASH_REMATCH[2]}
	local sum
	sum=$(cd "$ROOT/test/tools" && cat go.mod go.sum etcd/main.go | sha256sum | cut -d' ' -f1)
	local fixtools="$fixnet; if the error is in test/tools, run (cd test/tools && go mod tidy)"
	group kube "recipe=$RECIPE tools=$sum go=$GOVERSION" "Kubernetes $KUBE_VERSION control plane, kube-proxy and etcd" \
		"$fixtools" etcd kube-apiserver kube-scheduler kube-controller-manager kubectl kube-proxy -- build_kube
	group kubelet "recipe=$RECIPE tools=$sum go=$GOVERSION" "Kubernetes $KUBE_VERSION kubelet" \
		"$fixtools" kubelet -- build_kubelet

	local cv
	cv=$(cd "$ROOT/test/tools/conformance" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f '{{.Version}}' k8s.io/kubernetes) ||
		die "cannot read k8s.io/kubernetes's version from test/tools/conformance/go.mod (see output above); fix: cd test/tools/conformance && go mod tidy"
	[[ $cv == "$KUBE_VERSION" ]] ||
		die "test/tools/conformance pins k8s.io/kubernetes $cv but test/tools pins $KUBE_VERSION; fix: pin the same version in both go.mod files"
	sum=$(cd "$ROOT/test/tools/conformance" && cat go.mod go.sum | sha256sum | cut -d' ' -f1)
	group conformance "recipe=$RECIPE conformance=$sum go=$GOVERSION" "Kubernetes $KUBE_VERSION e2e suite" \
		"$fixnet; if the error is in test/tools/conformance, run (cd test/tools/conformance && go mod tidy)" e2e.test ginkgo agnhost nonewprivs -- build_conformance

	local dns
	dns=$(cd "$ROOT/test/tools/coredns" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f '{{.Version}}' github.com/coredns/coredns) ||
		die "cannot read CoreDNS's version from test/tools/coredns/go.mod (see output above); fix: cd test/tools/coredns && go mod tidy"
	sum=$(cd "$ROOT/test/tools/coredns" && cat go.mod go.sum main.go | sha256sum | cut -d' ' -f1)
	group coredns "recipe=$RECIPE coredns=$sum go=$GOVERSION" "CoreDNS $dns" \
		"$fixnet; if the error is in test/tools/coredns, run (cd test/tools/coredns && go mod tidy)" coredns -- build_coredns

	local ms
	ms=$(cd "$ROOT/test/tools/metrics-server" && GOFLAGS=-mod=readonly GOWORK=off go list -m -f '{{.Version}}' sigs.k8s.io/metrics-server) ||
		die "cannot read metrics-server's version from test/tools/metrics-server/go.mod (see output above); fix: cd test/tools/metrics-server && go mod tidy"
	sum=$(cd "$ROOT/test/tools/metrics-server" && cat go.mod go.sum | sha256sum | cut -d' ' -f1)
	group metrics-server "recipe=$RECIPE metrics-server=$sum go=$GOVERSION" "metrics-server $ms" \
		"$fixnet; if the error is in test/tools/metrics-server, run (cd test/tools/metrics-server && go mod tidy)" metrics-server -- build_metrics_server

	group registry "recipe=$RECIPE registry=$REGISTRY_VERSION go=$GOVERSION" "registry $REGISTRY_VERSION" "$fixnet" \
		registry -- build_registry

	group crictl "recipe=$RECIPE crictl=$CRICTL_VERSION go=$GOVERSION" "crictl $CRICTL_VERSION" "$fixnet" \
		crictl -- build_crictl
}

check_go
deb_packages
go_tools
