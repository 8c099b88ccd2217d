#!/usr/bin/env bash
# Build influxd 1.8.10 (the last 1.8 release; it answers both InfluxQL on /query and
# the v2 API with Flux) from Go modules into .cache/, keyed by the version; skipped
# when that binary is already there, as collector/build.sh is.
# Debian ships only 1.6.7, which has no /api/v2 endpoints.
# Prints the binary's path on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v1.8.10
if ! command -v go >/dev/null 2>&1; then
  echo "scripts/build_influxd.sh: Go is not installed; influxd $VERSION is built from Go modules" >&2
  exit 1
fi
out=".cache/influxd-${VERSION#v}"
if [ -x "$out/influxd" ]; then
  echo "scripts/build_influxd.sh: $out/influxd is up to date" >&2
  echo "$out/influxd"
  exit 0
fi
echo "scripts/build_influxd.sh: building influxd $VERSION into $out (first build downloads modules: minutes)" >&2
mkdir -p "$out.tmp"
# Into a temporary folder first so an interrupted build never looks up to date.
# -X main.version: a module build has no release stamp, and /ping's X-Influxdb-Version
# and `influxd version` would say "unknown".
GOBIN="$PWD/$out.tmp" go install -ldflags "-X main.version=${VERSION#v}" \
  "github.com/influxdata/influxdb/cmd/influxd@$VERSION" >&2
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out/influxd"
