#!/usr/bin/env bash
# Installs what bpf/ needs to build and run on Debian 12, and mounts tracefs.
# Idempotent: safe to run again; says what it does.
set -euo pipefail

PKGS=(clang llvm libbpf-dev bpftool linux-libc-dev libelf-dev zlib1g-dev make gcc)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "bpf/install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}"
else
	echo "bpf/install-deps: packages present (${PKGS[*]})"
fi

if [ ! -r /sys/kernel/btf/vmlinux ]; then
	echo "bpf/install-deps: WARNING /sys/kernel/btf/vmlinux missing: build with VMLINUX_BTF=<file> (docs/bpf.md)"
fi

# Tracepoints (and bpftool's view of them) need tracefs.
if [ "$(id -u)" = 0 ]; then
	if ! mountpoint -q /sys/kernel/tracing; then
		echo "bpf/install-deps: mounting tracefs on /sys/kernel/tracing"
		mount -t tracefs nodev /sys/kernel/tracing
	else
		echo "bpf/install-deps: tracefs already mounted"
	fi
else
	echo "bpf/install-deps: not root, not mounting tracefs"
fi
