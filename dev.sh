#!/usr/bin/env bash
# ponder's one entry point for humans and CI.
#   ./dev.sh run [ponder flags...]   install what is missing, build, run ponder
#   ./dev.sh test                    install, build, run every test (also under ASan+UBSan)
#   ./dev.sh demo                    offline demo: fake upstream + ponder, one forced exchange
#   ./dev.sh demo eval               offline eval demo: control vs two forced variants, a report
#   ./dev.sh bench                   build optimized and measure ponder against its peers
#   ./dev.sh fuzz [SECONDS]          build the libFuzzer targets and run each SECONDS (default 60)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD

DEB_PKGS=(build-essential pkg-config meson ninja-build libuv1-dev libcurl4-openssl-dev libssl-dev
          node-llhttp libjansson-dev libyaml-dev libcmocka-dev libnghttp2-dev)
# debhelper, dpkg-dev, lintian, groff-base and man-db: tests/ops/ builds, checks and lints the .deb;
# chromium: tests/eval/ renders report.html.
TEST_PKGS=(prometheus clang libclang-rt-14-dev tinyproxy openssl debhelper dpkg-dev lintian groff-base
           man-db chromium)

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
  local log=$1 p f s top
  p=$(grep -E '^# pass ' "$log" | awk '{print $3}' | tail -1 || true)
  f=$(grep -E '^# fail ' "$log" | awk '{print $3}' | tail -1 || true)
  s=$(grep -E '^# skipped ' "$log" | awk '{print $3}' | tail -1 || true)
  # A failed before/after hook fails its suite or file ("not ok" at the top level) without
  # counting in "# fail": such a failure counts too.
  top=$(grep -E '^not ok ' "$log" | grep -vc '# TODO' || true)
  if [ "${f:-0}" -eq 0 ] && [ "${top:-0}" -gt 0 ]; then f=$top; fi
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
  node_suites "$dir" "$label" tests/fake/ tests/integration/ tests/sdk/ tests/clients/ tests/eval/
}

node_suites() { # node_suites BUILD_DIR LABEL PATH...
  local dir=$1 label=$2 log
  shift 2
  log=$(mktemp)
  PONDER_BIN="$ROOT/$dir/ponder" node --test --test-concurrency=2 --test-reporter=tap \
    "$@" >"$log" 2>&1 || true
  grep -E '^(not ok|# (tests|pass|fail|skipped|duration_ms))' "$log" || true
  if grep -q '^not ok' "$log"; then
    echo "---- failures ($label) ----"; grep -A30 -E '^ *not ok' "$log" | head -200 || true
  fi
  count_node "$log"
  rm -f "$log"
}

fuzz_build() { # the libFuzzer targets, with ASan+UBSan, in build-fuzz
  CC=clang build build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dbuildtype=debugoptimized
}

fuzz_targets() { find build-fuzz/tests/fuzz -maxdepth 1 -name 'fuzz_*' -type f -perm -u+x 2>/dev/null | sort; }

fuzz_brief() { # every target over its seed corpus plus a bounded number of mutated runs
  local runs=${FUZZ_RUNS:-20000} exe name log rc
  echo "==> [fuzz] each target: seed corpus + $runs runs (ASan+UBSan)"
  for exe in $(fuzz_targets); do
    name=${exe##*/fuzz_}; log=$(mktemp); work=$(mktemp -d); rc=0
    # libFuzzer adds what it finds to the first folder: a scratch one, so the seeds stay as committed.
    (cd "$work" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      "$ROOT/$exe" -runs="$runs" -seed=1 \
      "$work" "$ROOT/tests/fuzz/corpus/$name") >"$log" 2>&1 || rc=$?
    rm -rf "$work"
    if [ "$rc" -eq 0 ]; then
      PASS=$((PASS + 1)); printf '  fuzz_%-14s ok (%s)\n' "$name" "$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1)"
    else
      FAIL=$((FAIL + 1)); printf '  fuzz_%-14s FAILED\n' "$name"; tail -40 "$log"
    fi
    rm -f "$log"
  done
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
    # The Debian package (built from a scratch copy of the tree), the service unit, the man page,
    # and the observability kit against a real Prometheus scraping ponder.
    echo "==> [ops] package, service, man page, dashboard and rules (node --test)"
    node_suites build ops tests/ops/
    # http:// upstreams normally use the native HTTP/1.1 client; run the end-to-end suites once
    # more with every upstream call going through libcurl (the https:// path).
    echo "==> [libcurl] integration and SDK tests with PONDER_UPSTREAM_CLIENT=curl"
    PONDER_UPSTREAM_CLIENT=curl node_suites build libcurl tests/integration/ tests/sdk/
    # The same suites under AddressSanitizer + UndefinedBehaviorSanitizer: any report fails.
    build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug
    sandir=$(mktemp -d)
    export ASAN_OPTIONS="detect_leaks=1:log_path=$sandir/asan:abort_on_error=0"
    # halt_on_error: with ASan in the same runtime UBSan reports do not reach log_path, so a
    # report ends the process instead, and the test that caused it fails.
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$sandir/ubsan"
    run_suites build-asan sanitizers
    unset ASAN_OPTIONS UBSAN_OPTIONS
    if ls "$sandir"/* >/dev/null 2>&1; then
      echo "---- sanitizer reports ----"; cat "$sandir"/* | head -150 || true
      FAIL=$((FAIL + $(ls "$sandir" | wc -l)))
    fi
    rm -rf "$sandir"
    fuzz_build
    fuzz_brief
    echo "$PASS passed, $FAIL failed, $SKIP skipped"
    [ "$FAIL" -eq 0 ]
    ;;
  demo)
    install_deps
    build build
    # `./dev.sh demo eval`: ponder eval over the bundled dataset against the simulated reasoner.
    if [ "${1:-}" = eval ]; then exec node tests/demo_eval.mjs; fi
    exec node tests/demo.mjs
    ;;
  fuzz)
    # A long run: each target for SECONDS on a scratch copy of its corpus (the committed seeds
    # are not changed). Crashes are written to build-fuzz/artifacts/NAME/; turn each into a test.
    install_deps test
    fuzz_build
    secs=${1:-60}; total_crash=0
    for exe in $(fuzz_targets); do
      name=${exe##*/fuzz_}; work=$(mktemp -d); art=$ROOT/build-fuzz/artifacts/$name
      mkdir -p "$art"; cp -r tests/fuzz/corpus/"$name"/. "$work"/ 2>/dev/null || true
      log=$ROOT/build-fuzz/artifacts/$name.log
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$exe" -max_total_time="$secs" -artifact_prefix="$art/" \
        -print_final_stats=1 "$work" >"$log" 2>&1 || true
      execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
      crashes=$(find "$art" -type f | wc -l); total_crash=$((total_crash + crashes))
      printf 'fuzz_%-14s %12s executions in %ss, %s crash file(s)\n' "$name" "$execs" "$secs" "$crashes"
      rm -rf "$work"
    done
    [ "$total_crash" -eq 0 ]
    ;;
  bench)
    install_deps
    exec bash bench/run.sh "$@"
    ;;
  *)
    echo "usage: ./dev.sh run|test|demo|bench|fuzz" >&2; exit 1 ;;
esac
