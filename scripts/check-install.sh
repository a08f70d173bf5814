#!/usr/bin/env bash
# Checks that `go install MODULE/cmd/virality@VERSION` works: the module is
# served at a test version from a file-based module proxy made of this
# checkout (git archive of HEAD), dependencies come from the usual proxy,
# and the installed binary must answer `virality version`.
set -euo pipefail
cd "$(dirname "$0")/.."
module=$(go list -m)
# A pseudo-version of HEAD: the module cache keeps each version once.
version=v0.0.0-$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)-$(git rev-parse --short=12 HEAD)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir="$tmp/proxy/$module/@v"
mkdir -p "$dir"
echo "$version" >"$dir/list"
printf '{"Version":"%s"}\n' "$version" >"$dir/$version.info"
cp go.mod "$dir/$version.mod"
git archive --format=zip --prefix="$module@$version/" -o "$dir/$version.zip" HEAD
GOPROXY="file://$tmp/proxy,$(go env GOPROXY)" GONOSUMDB="$module" GOFLAGS=-mod=mod \
  GOBIN="$tmp/bin" \
  go install "$module/cmd/virality@$version"
"$tmp/bin/virality" version
echo "install check: go install $module/cmd/virality@VERSION works"
