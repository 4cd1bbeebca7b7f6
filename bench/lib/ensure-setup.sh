# Sourced by the bench/ launchers (cwd = repository root).
#
# ensure_setup: installs what strata needs (`make setup`: Debian packages, node_modules, tsc).
# tsc exits non-zero when any file in the tree has a type error (others may be mid-edit); the bench
# only needs node_modules from it, so that is tolerated with a warning.
#
# make_snapshot [REF]: compiles strata into a private directory and sets BENCH_SNAPSHOT to it, so a
# run measures one fixed build even while dist/ is being recompiled by someone else. Without REF it
# takes the working tree's src/; with REF (e.g. HEAD) it takes src/, bin/, scripts/ and examples/ from that
# commit. bench/ and test/helpers/ always come from the working tree. Sets STRATA_BENCH_SOURCE to a
# description of what is measured. The caller removes BENCH_SNAPSHOT (see cleanup_snapshot).
ensure_setup() {
  local log
  log=$(mktemp /tmp/strata-bench-setup.XXXXXX)
  if ! make -s setup >"$log" 2>&1; then
    if [ ! -f node_modules/.package-lock.json ]; then
      cat "$log" >&2
      rm -f "$log"
      echo "bench: make setup failed (output above)" >&2
      exit 1
    fi
    echo "[bench] make setup reported errors (type errors in files being edited?); continuing:" >&2
    grep -m 5 'error' "$log" >&2 || true
  fi
  rm -f "$log"
}

make_snapshot() {
  local ref=${1:-} snap head
  snap=$(mktemp -d /tmp/strata-bench-build.XXXXXX)
  BENCH_SNAPSHOT=$snap
  head=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$ref" ]; then
    git archive "$ref" src bin scripts package.json examples | tar -x -C "$snap"
    STRATA_BENCH_SOURCE="strata $(git rev-parse --short "$ref") ($ref)"
  else
    cp -a src bin scripts package.json examples "$snap/"
    STRATA_BENCH_SOURCE="strata working tree at $head"
    if [ -n "$(git status --porcelain -- src 2>/dev/null)" ]; then
      STRATA_BENCH_SOURCE="$STRATA_BENCH_SOURCE + uncommitted changes in src/"
    fi
  fi
  mkdir -p "$snap/test"
  cp -a test/helpers "$snap/test/"
  cp -a bench "$snap/"
  ln -s "$PWD/node_modules" "$snap/node_modules"
  node -e '
    const fs = require("fs");
    const cfg = JSON.parse(fs.readFileSync("tsconfig.json", "utf8"));
    cfg.include = ["src/**/*.ts", "test/helpers/**/*.ts", "bench/**/*.ts"];
    fs.writeFileSync(process.argv[1] + "/tsconfig.json", JSON.stringify(cfg, null, 2));
  ' "$snap"
  local log
  log=$(mktemp /tmp/strata-bench-tsc.XXXXXX)
  if ! npx tsc -p "$snap/tsconfig.json" >"$log" 2>&1; then
    echo "[bench] tsc reported errors in the measured tree; running what it emitted:" >&2
    grep -m 5 'error' "$log" >&2 || true
  fi
  rm -f "$log"
  if [ ! -f "$snap/dist/src/cli/main.js" ]; then
    echo "bench: compiling strata into $snap failed" >&2
    rm -rf "$snap"
    exit 1
  fi
  # The launcher runs the bundle when there is one (commits before it ran the modules).
  if [ -f "$snap/scripts/bundle.mjs" ] && ! node "$snap/scripts/bundle.mjs"; then
    echo "bench: bundling strata in $snap failed" >&2
    rm -rf "$snap"
    exit 1
  fi
  export STRATA_BENCH_SOURCE
}

cleanup_snapshot() {
  if [ -n "${BENCH_SNAPSHOT:-}" ]; then rm -rf "$BENCH_SNAPSHOT"; fi
}

# Splits `--ref REV` / `--ref=REV` out of the arguments: sets BENCH_REF and BENCH_ARGS (the rest).
parse_ref() {
  BENCH_REF=''
  BENCH_ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --ref) BENCH_REF=${2:?--ref wants a commit}; shift 2 ;;
      --ref=*) BENCH_REF=${1#--ref=}; shift ;;
      *) BENCH_ARGS+=("$1"); shift ;;
    esac
  done
}
