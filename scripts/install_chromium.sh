#!/usr/bin/env bash
# Install Debian's Chromium for the Kedro-Viz browser test (needs root and the Debian package mirror).
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if ! command -v apt-get >/dev/null; then echo "apt-get not available" >&2; exit 1; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null && sudo -n true 2>/dev/null || { echo "not root and no passwordless sudo" >&2; exit 1; }
  SUDO="sudo -n"
fi
echo "installing chromium (Debian package) for the Kedro-Viz browser test..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
