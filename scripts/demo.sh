#!/usr/bin/env bash
# The README's demo: make a busybox base image from Debian's busybox-static (no registry needed),
# build examples/app with strata, load the result into podman and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/strata-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

base=$(node --input-type=module -e "import { busyboxLayout } from './dist/test/helpers/base-images.js'; console.log(await busyboxLayout());")
echo "== base image: OCI layout $base (busybox from busybox-static)"

echo "== strata build examples/app"
./bin/strata build examples/app \
  --build-context "busybox=oci-layout://$base:latest" \
  -t strata-demo:latest \
  --progress=plain \
  -o type=image -o "type=docker,dest=$work/strata-demo.tar"

echo "== rebuild with nothing changed (every step CACHED)"
./bin/strata build examples/app --build-context "busybox=oci-layout://$base:latest" -t strata-demo:latest --progress=plain 2>&1 | grep -E 'CACHED|cache miss|^sha256' || true

echo "== podman load + run"
cat >"$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$work/containers.conf"
podman load -q -i "$work/strata-demo.tar"
echo "\$ podman run --rm localhost/strata-demo:latest"
podman run --rm localhost/strata-demo:latest
