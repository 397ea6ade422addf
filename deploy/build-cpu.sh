#!/usr/bin/env bash
# Builds the CPU image from deploy/Containerfile: a static binary (cgo off) on an empty base.
#   deploy/build-cpu.sh [TAG]        (default embedbench:cpu; BUILDER=docker to use docker)
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-embedbench:cpu}"
builder="${BUILDER:-podman}"
version="${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}"

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT

# -trimpath and -s -w: no build paths or symbol tables in the image (a smaller binary; panics
# still print file:line).
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$ctx/embedbench" ./cmd/embedbench

roots=""
for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
  if [ -s "$f" ]; then roots="$f"; break; fi
done
if [ -z "$roots" ]; then
  echo "build-cpu.sh: no CA bundle found on this machine (install ca-certificates)" >&2
  exit 1
fi
cp "$roots" "$ctx/ca-certificates.crt"
mkdir -p "$ctx/writable/cache/huggingface" "$ctx/writable/tmp"

"$builder" build --file deploy/Containerfile --tag "$tag" "$ctx"
echo "built $tag"
