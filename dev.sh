#!/usr/bin/env bash
# ponder's one entry point for humans and CI.
#   ./dev.sh run [ponder flags...]   install what is missing, build, run ponder
#   ./dev.sh test                    install, build, run every test (also under ASan+UBSan)
#   ./dev.sh demo                    offline demo: fake upstream + ponder, one forced exchange
#   ./dev.sh bench                   build optimized and measure ponder against its peers
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

DEB_PKGS=(build-essential pkg-config meson ninja-build libuv1-dev libcurl4-openssl-dev
          node-llhttp libjansson-dev libyaml-dev libcmocka-dev libnghttp2-dev)
TEST_PKGS=(prometheus)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_deps() {
  local want=("${DEB_PKGS[@]}") missing=()
  [ "${1:-}" = test ] && want+=("${TEST_PKGS[@]}")
  command -v node >/dev/null 2>&1 || want+=(nodejs)
  command -v npm >/dev/null 2>&1 || want+=(npm)
  for p in "${want[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  fi
}

build() { # build DIR [meson options...]
  local dir=$1; shift
  local werror=()
  [ "${CI:-}" = true ] && werror=(-Dwerror=true)
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "${werror[@]}" "$@" >&2
  fi
  ninja -C "$dir" >&2
}

npm_deps() {
  if [ ! -d tests/node_modules/openai ] || [ tests/package-lock.json -nt tests/node_modules/.stamp ]; then
    echo "==> npm ci (tests)" >&2
    (cd tests && npm ci --silent --no-audit --no-fund >&2 && touch node_modules/.stamp)
  fi
}

PASS=0; FAIL=0; SKIP=0
count_unit() { # runs one cmocka executable and counts its "[  PASSED  ] N" / "[  FAILED  ] N"
  local exe=$1 log p f rc=0
  log=$(mktemp)
  PONDER_TEST_DATA="$ROOT/tests/unit/data" "$exe" >"$log" 2>&1 || rc=$?
  p=$(grep -E '^\[  PASSED  \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | head -1 || true)
  f=$(grep -E '^\[  FAILED  \] [0-9]+ test' "$log" | grep -oE '[0-9]+' | head -1 || true)
  PASS=$((PASS + ${p:-0})); FAIL=$((FAIL + ${f:-0}))
  if [ "$rc" -ne 0 ] && [ -z "$f" ]; then FAIL=$((FAIL + 1)); fi
  printf '  %-14s %s passed, %s failed\n' "$(basename "$exe")" "${p:-0}" "${f:-0}"
  if [ "$rc" -ne 0 ]; then sed -n '1,80p' "$log"; fi
  rm -f "$log"
}
count_node() { # parses node --test's "# pass N" / "# fail N" / "# skipped N"
  local log=$1 p f s
  p=$(grep -E '^# pass ' "$log" | awk '{print $3}' | tail -1 || true)
  f=$(grep -E '^# fail ' "$log" | awk '{print $3}' | tail -1 || true)
  s=$(grep -E '^# skipped ' "$log" | awk '{print $3}' | tail -1 || true)
  PASS=$((PASS + ${p:-0})); FAIL=$((FAIL + ${f:-0})); SKIP=$((SKIP + ${s:-0}))
  if [ -z "$p" ]; then FAIL=$((FAIL + 1)); fi
}

run_suites() { # run_suites BUILD_DIR LABEL
  local dir=$1 label=$2
  echo "==> [$label] unit tests (cmocka)"
  for exe in "$dir"/tests/test_*; do
    if [ -f "$exe" ] && [ -x "$exe" ]; then count_unit "$exe"; fi
  done
  echo "==> [$label] integration, fake upstream and SDK tests (node --test)"
  node_suites "$dir" "$label" tests/fake/ tests/integration/ tests/sdk/
}

node_suites() { # node_suites BUILD_DIR LABEL PATH...
  local dir=$1 label=$2 log
  shift 2
  log=$(mktemp)
  PONDER_BIN="$ROOT/$dir/ponder" node --test --test-concurrency=2 --test-reporter=tap \
    "$@" >"$log" 2>&1 || true
  grep -E '^(not ok|# (tests|pass|fail|skipped|duration_ms))' "$log" || true
  if grep -q '^not ok' "$log"; then
    echo "---- failures ($label) ----"; grep -A30 -E '^ *not ok' "$log" | head -200
  fi
  count_node "$log"
  rm -f "$log"
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case "$cmd" in
  run)
    install_deps
    build build
    exec ./build/ponder "$@"
    ;;
  test)
    install_deps test
    npm_deps
    build build
    run_suites build default
    # http:// upstreams normally use the native HTTP/1.1 client; run the end-to-end suites once
    # more with every upstream call going through libcurl (the https:// path).
    echo "==> [libcurl] integration and SDK tests with PONDER_UPSTREAM_CLIENT=curl"
    PONDER_UPSTREAM_CLIENT=curl node_suites build libcurl tests/integration/ tests/sdk/
    # The same suites under AddressSanitizer + UndefinedBehaviorSanitizer: any report fails.
    build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
    sandir=$(mktemp -d)
    export ASAN_OPTIONS="detect_leaks=1:log_path=$sandir/asan:abort_on_error=0"
    export UBSAN_OPTIONS="print_stacktrace=1:log_path=$sandir/ubsan"
    run_suites build-asan sanitizers
    unset ASAN_OPTIONS UBSAN_OPTIONS
    if ls "$sandir"/* >/dev/null 2>&1; then
      echo "---- sanitizer reports ----"; cat "$sandir"/* | head -150
      FAIL=$((FAIL + $(ls "$sandir" | wc -l)))
    fi
    rm -rf "$sandir"
    echo "$PASS passed, $FAIL failed, $SKIP skipped"
    [ "$FAIL" -eq 0 ]
    ;;
  demo)
    install_deps
    build build
    exec node tests/demo.mjs
    ;;
  bench)
    install_deps
    exec bash bench/run.sh "$@"
    ;;
  *)
    echo "usage: ./dev.sh run|test|demo|bench" >&2; exit 1 ;;
esac
