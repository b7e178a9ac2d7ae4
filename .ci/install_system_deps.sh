#!/usr/bin/env bash
# System packages the ops tests drive for real: redis-server (Celery broker) and Debian's
# chromium (the browser test). A fast no-op when both are present; when apt or root is
# missing it only warns, and the tests that need them skip with a message naming what is absent.
set -uo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get; missing ${missing[*]} (their tests will skip)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_system_deps: not root; missing ${missing[*]} (their tests will skip)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_system_deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || echo "install_system_deps: apt-get update failed" >&2
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || echo "install_system_deps: apt-get install ${missing[*]} failed (their tests will skip)" >&2
exit 0
