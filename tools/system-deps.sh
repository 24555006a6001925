#!/usr/bin/env bash
# Debian packages the test suite needs (Qt's runtime libraries for the offscreen
# platform). Installed only when missing, so a developer's machine is left alone.
set -euo pipefail
need=()
# curl and openssl: the API guide's curl walkthrough is run by tests/server/test_walkthrough.py.
# jq: the "Signing in" examples of the API guide, run by tests/server/test_oauth_guide.py.
for pkg in libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 curl openssl jq; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
