#!/usr/bin/env bash
# Installs the Debian packages strata's builds and tests need, only when something is missing.
set -euo pipefail
pkgs=(crun runc skopeo umoci podman docker-registry busybox-static mmdebstrap tar gzip bzip2 xz-utils zstd attr util-linux iproute2 python3 make g++ ca-certificates git)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
