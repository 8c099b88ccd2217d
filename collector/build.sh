#!/usr/bin/env bash
# Build otelcol-tts with the official builder (ocb) into .cache/, keyed by a
# hash of the manifest; skipped when that binary is already there.
# Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILDER_VERSION=v0.161.0
if ! command -v go >/dev/null 2>&1; then
  echo "collector/build.sh: Go is not installed; the collector is built from Go modules (Go 1.25+)" >&2
  exit 1
fi
manifest=collector/builder-config.yaml
key=$(sha256sum "$manifest" | cut -c1-16)
out=".cache/otelcol-tts-$key"
if [ -x "$out/otelcol-tts" ]; then
  echo "collector/build.sh: $out/otelcol-tts is up to date" >&2
  echo "$out/otelcol-tts"
  exit 0
fi
builder="$(go env GOPATH)/bin/builder"
if [ ! -x "$builder" ] || ! "$builder" version 2>/dev/null | grep -q "${BUILDER_VERSION#v}"; then
  echo "collector/build.sh: installing the builder $BUILDER_VERSION" >&2
  go install "go.opentelemetry.io/collector/cmd/builder@$BUILDER_VERSION"
fi
echo "collector/build.sh: building otelcol-tts into $out (first build downloads modules: minutes)" >&2
mkdir -p "$out"
"$builder" --config "$manifest" --output-path "$out" >&2
echo "$out/otelcol-tts"
