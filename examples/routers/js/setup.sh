#!/usr/bin/env bash
# Installs what ./build.sh needs: the toolchain that package-lock.json pins
# (componentize-js, about 450 MB), with `npm ci`, into
# .toolchain/componentize-js (or PRESENCE_ROUTER_TOOLCHAINS/componentize-js);
# and says what it found and what it installed. Needs node (20 or later)
# and npm. Delete the toolchain's directory to install it afresh.
#
#     ./setup.sh [--check]   # --check: install nothing, say what is missing
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
setup_start "$@"
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool is missing: install Node.js 20 or later (node and npm), then run this again" >&2
    exit 1
  fi
done
toolchain="$toolchains/componentize-js"
what="the componentize-js of package-lock.json ($toolchain)"
# Its programs run as you: never a toolchain (or a link to one) that
# someone else could change.
trusted_if_there "$toolchains" "$toolchain"
if js_toolchain_ready "$toolchain"; then
  found "$what"
elif [ -n "$check_only" ]; then
  missing "$what"
else
  lock_toolchains
  # Another setup may have installed it while this one waited.
  if ! js_toolchain_ready "$toolchain"; then
    echo "$0: installing $what" >&2
    mkdir -p "$toolchain"
    cp package.json package-lock.json "$toolchain/"
    (cd "$toolchain" && npm ci --no-audit --no-fund --loglevel=error) >&2
  fi
  need_trusted_dir "$toolchain" "$toolchain/node_modules"
  unlock_toolchains
  installed "$what"
fi
setup_end
