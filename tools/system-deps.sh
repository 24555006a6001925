#!/usr/bin/env bash
# Debian packages the test suite and `make package` need. Installed only when
# missing, so a developer's machine is left alone.
set -euo pipefail
need=()
# Qt's runtime libraries for the offscreen platform.
# curl and openssl: the API guide's curl walkthrough (tests/server/http/test_walkthrough.py).
# jq: the "Signing in" examples of the API guide (tests/server/identity/test_oauth_guide.py).
# binutils: PyInstaller reads shared-library dependencies with objdump (make package);
# libxcb-icccm4, libxcb-keysyms1: Qt's X11 plugin needs them, so the tray bundle carries them.
# chrpath: the .deb build removes the build machine's library path from bundled libraries.
# lintian: checks the .deb files. nginx: the reverse-proxy sample is tested through it.
# chromium, chromium-driver: the web client's tests drive the system browser (Selenium).
# postgresql: the server suites' PostgreSQL run starts throwaway clusters with its initdb
# and pg_ctl (tests/support/postgres.py); the packaged cluster's service is not started.
for pkg in libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 curl openssl jq \
  binutils chrpath libxcb-icccm4 libxcb-keysyms1 lintian nginx chromium chromium-driver \
  postgresql; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} (sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  # Install without starting services: nginx would otherwise start listening on port 80
  # for all addresses. The tests start their own nginx on loopback.
  policy=/usr/sbin/policy-rc.d
  own_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  trap '[ -n "$own_policy" ] && rm -f "$policy"' EXIT
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
