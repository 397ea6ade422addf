#!/usr/bin/env bash
# The project's test command: installs what the tests need on a fresh machine, then runs
# gofmt, go vet and the whole test suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: chromium checks the HTML report in a real headless browser;
# OpenBLAS runs the CPU model's matrix products (without it they run in pure Go, far slower);
# podman builds the CPU container image in deploy's test (inspected there, not run).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v podman >/dev/null 2>&1 || missing+=(podman)
[ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] || [ -e /usr/lib/aarch64-linux-gnu/libopenblas.so.0 ] || missing+=(libopenblas0-pthread)
# oneDNN: the CPU model's float32 and bf16 products where it is found (tests cover both libraries).
[ -e /usr/lib/x86_64-linux-gnu/libdnnl.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libdnnl.so.2 ] || missing+=(libdnnl2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# go-nvml's cgo declares NVML functions that NVML 13 deprecates; their warnings would bury the
# test output.
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -Wno-deprecated-declarations"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
go test -timeout 45m -count=1 "$@" ./...

# The engines (replicas, pipelined steps, simplego's parallel graph execution), the server and
# the load generator run on many goroutines at once: their tests again under the race
# detector (about 2 minutes here).
echo "== go test -race"
go test -race -timeout 20m -count=1 ./internal/engine ./internal/server ./internal/stress ./internal/hub

# A short fuzz run of each request decoder, through the whole handler (longer: FUZZTIME=2000000x).
# The budget is a count of inputs, not a duration: Go 1.26's coordinator can report its own
# -fuzztime deadline as a failing target (golang/go#75804, fixed in 1.27), and did so in CI.
echo "== go test -fuzz"
for target in FuzzEmbed FuzzOpenAI FuzzTokenize; do
  go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-20000x}" ./internal/server
done
