#!/usr/bin/env bash
# Build InfluxDB OSS 2.8.0 (influxd) from Go modules and crates into .cache/, keyed by
# the version; skipped when that binary is already there, as build_influxd.sh is.
# Debian has no InfluxDB 2 package; 2.8 is the newest release whose flux module the
# Go proxy serves. Needs Go, cargo (any recent stable Rust) and pkg-config.
# Prints the binary's path on its last line. With --check, builds nothing: the path if
# the binary is there, else exit 3 (the tests' fixtures use it: a build takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v2.8.0
MODULE=github.com/influxdata/influxdb/v2
me=scripts/build_influxdb2.sh
out=".cache/influxdb-${VERSION#v}"
if [ -x "$out/influxd" ]; then
  echo "$me: $out/influxd is up to date" >&2
  echo "$out/influxd"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "$me: InfluxDB $VERSION is not built yet: run \`make influxdb2\` (or $me)" >&2
  exit 3
fi
for tool in go cargo rustc pkg-config; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$me: $tool is not installed; InfluxDB $VERSION is built from Go modules" \
      "and Rust crates (Go 1.24+, cargo, pkg-config)" >&2
    exit 1
  fi
done
echo "$me: building InfluxDB $VERSION into $out (from empty caches: about 10 minutes, 3 GB of caches)" >&2
# Everything goes into a temporary folder first so an interrupted build never looks up to date.
tmp="$PWD/$out.tmp"
rm -rf "$tmp"
mkdir -p "$tmp/bin"

# `go install module@version` refuses a module whose go.mod has a replace directive, as
# influxdb's has: build in a writable copy of the downloaded module instead.
src=$(cd "$tmp" && go mod download -json "$MODULE@$VERSION" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
released=$(cd "$tmp" && go mod download -json "$MODULE@$VERSION" |
  sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' | xargs sed -n 's/.*"Time":"\([^"]*\)".*/\1/p')
cp -r "$src" "$tmp/src"
chmod -R u+w "$tmp/src"

# libflux (Rust) is linked through cgo's `pkg-config: flux`; influxdata's pkg-config
# wrapper, at the version influxdb's go.mod pins, builds it with cargo and hands the
# real pkg-config everything else.
wrapper=$(sed -n 's/^[[:space:]]*github.com\/influxdata\/pkg-config \(v[^ ]*\).*/\1/p' "$tmp/src/go.mod")
GOBIN="$tmp/bin" go install "github.com/influxdata/pkg-config@$wrapper" >&2
# libflux denies warnings and newer compilers add lints, which would fail the build;
# RUSTFLAGS does not reach build scripts when the wrapper passes --target, a
# RUSTC_WRAPPER does.
cat >"$tmp/bin/rustc-cap-lints" <<'EOF'
#!/bin/sh
exec "$@" --cap-lints=warn
EOF
chmod +x "$tmp/bin/rustc-cap-lints"

# libflux's rust-toolchain.toml pins a Rust no longer downloadable: the installed
# default toolchain is used instead. -X main.*: a module build has no release stamp and
# /health would say "dev". No `assets` tag: no UI (GET / is 404), the whole API works.
(
  cd "$tmp/src"
  export PATH="$tmp/bin:$PATH" PKG_CONFIG="$tmp/bin/pkg-config"
  export RUSTC_WRAPPER="$tmp/bin/rustc-cap-lints"
  export RUSTUP_TOOLCHAIN="${RUSTUP_TOOLCHAIN:-stable}"
  go build -o "$tmp/influxd" -tags sqlite_foreign_keys,sqlite_json \
    -ldflags "-s -w -X main.version=${VERSION#v} -X main.commit=module-$VERSION -X main.date=$released" \
    ./cmd/influxd >&2
)
rm -rf "$tmp/src" "$tmp/bin"
rm -rf "$out"
mv "$tmp" "$out"
echo "$out/influxd"
