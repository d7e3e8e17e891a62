#!/usr/bin/env bash
# Builds this router (router.js) into a component:
#
#     ./build.sh [OUT_DIR]   # -> build/example_router.wasm, or OUT_DIR/example_router.wasm
#
# Needs node and the toolchain ./setup.sh installs (componentize-js, in
# .toolchain/componentize-js or PRESENCE_ROUTER_TOOLCHAINS/componentize-js),
# reached through the node_modules link here; installs nothing (exit status
# 3 when something is missing). Skips the build when none of its inputs
# changed since the last one. Prints the component's path last.
component=example_router.wasm
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_build "$@"
if ! command -v node >/dev/null; then
  missing_toolchain "node is missing" "install Node.js 20 or later (node and npm)"
fi
toolchain="$toolchains/componentize-js"
# Its programs run as you: never a toolchain (or a link to one) that
# someone else could change.
trusted_if_there "$toolchains" "$toolchain"
if ! js_toolchain_ready "$toolchain"; then
  missing_toolchain "the componentize-js of package-lock.json is not installed in $toolchain"
fi
need_trusted_dir "$toolchain/node_modules"
if [ -d node_modules ] && [ ! -L node_modules ]; then
  echo "$0: node_modules/ here is a directory: remove it (the build reaches its toolchain, $toolchain, through a link of that name)" >&2
  exit 1
fi
ln -sfn "$toolchain/node_modules" node_modules

up_to_date "$( (hash router.js build.mjs build.sh lib.sh package-lock.json wit/*.wit; node --version) |
  sha256sum | cut -d' ' -f1)"
node build.mjs "$out.partial" >&2
mv "$out.partial" "$out"
built
