#!/usr/bin/env bash
# Installs the Debian packages the test suite needs when they are missing:
# chromium (driven by Playwright) and a CJK font so Korean text renders in screenshots.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! fc-list 2>/dev/null | grep -qiE 'Noto Sans CJK|NanumGothic'; then
  need+=(fonts-noto-cjk)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: apt-get not found; install ${need[*]} by your system's means" >&2
  exit 0
fi
echo "install-system-deps: installing ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" fontconfig >/dev/null
