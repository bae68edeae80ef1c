#!/usr/bin/env bash
# Installs the Debian packages the platform and its tests need when they are missing:
# bubblewrap (the grader's sandbox), python3-venv (the learners' kernel environment),
# chromium (driven by Playwright) and a CJK font so Korean text renders in screenshots.
set -euo pipefail

# Usage: install-system-deps.sh [--test]   (--test adds what only the test suite needs)
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  if ! fc-list 2>/dev/null | grep -qiE 'Noto Sans CJK|NanumGothic'; then
    need+=(fonts-noto-cjk)
  fi
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
