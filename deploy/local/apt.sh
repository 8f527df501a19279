# Sourced by the deploy/local scripts that install Debian packages: one way to do it.
#   apt_list FILE          the packages named in a list (deploy/local/packages/*.txt)
#   apt_missing PKG...     those of PKG not installed, one a line
#   apt_install PKG...     install exactly these: no recommends, and nothing already
#                          installed is upgraded unless a new package's dependency needs it
# apt 2.5+ (Debian 12) otherwise upgrades every installed binary of a new package's source
# package (bpftool brings linux-perf and linux-libc-dev along): Upgrade-By-Source-Package off.
# KTRAIL_STEP_STATUS (set by deploy/local/progress.sh): apt's machine-readable progress goes
# there, for the install view's percentage.
APT_INSTALL_FLAGS=(-y -qq --no-install-recommends --no-upgrade -o APT::Get::Upgrade-By-Source-Package=false)

apt_list() { sed 's/#.*//' "$1" | awk 'NF { print $1 }'; }

apt_missing() {
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

apt_install() {
  [ $# -gt 0 ] || return 0
  [ "$(id -u)" = 0 ] || { echo "apt_install: installing $* needs root" >&2; return 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services in the packages (docker.io, containerd, clickhouse-server) must not start on
  # install: ktrail starts its own. A policy-rc.d already there is the machine's and stays.
  local policy=/usr/sbin/policy-rc.d own_policy=0 status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  if [ -n "${KTRAIL_STEP_STATUS:-}" ]; then
    apt-get install "${APT_INSTALL_FLAGS[@]}" -o APT::Status-Fd=3 "$@" 3>>"$KTRAIL_STEP_STATUS" || status=$?
  else
    apt-get install "${APT_INSTALL_FLAGS[@]}" "$@" || status=$?
  fi
  if [ $own_policy = 1 ]; then rm -f "$policy"; fi
  return $status
}
