#!/usr/bin/env bash
# Refresh the web client's vendored tus-js-client browser build from the npm registry.
# npm checks the package's registry integrity hash; the page loads the copy committed
# under server/http/web/static/vendor/, so installing and serving never need the network.
#
#   bash tools/vendor_tus_client.sh [VERSION]     (default: the version pinned below)
set -euo pipefail

VERSION="${1:-4.3.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/server/http/web/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "tus-js-client@$VERSION" >/dev/null
tar -xzf "tus-js-client-$VERSION.tgz"
cp package/dist/tus.min.js "$DEST/tus.min.js"
cp package/LICENSE "$DEST/tus-js-client.LICENSE"
printf 'tus-js-client %s (npm: package/dist/tus.min.js, package/LICENSE)\n' "$VERSION" \
    >"$DEST/tus-js-client.VERSION"
echo "tus-js-client $VERSION copied into $DEST" >&2
