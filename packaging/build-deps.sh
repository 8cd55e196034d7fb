#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what building, running the demo and testing ncloudfs need, from
# Debian's packages (the list: packaging/build-deps.txt). Does nothing when
# everything is already there.
set -eu
PKGS=$(sed -e 's/#.*//' "$(dirname "$0")/build-deps.txt")
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "build-deps: missing:$missing; run as root or install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends $missing
