#!/usr/bin/env bash
# Builds this router ({{name}}, router.js) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs node (20 or later) and npm: installs the toolchain that
# package-lock.json pins (componentize-js) with `npm ci` into
# .toolchain/componentize-js (or PRESENCE_ROUTER_TOOLCHAINS/componentize-js),
# reached through the node_modules link here. Skips the build when none of
# its inputs changed since the last one. Prints the component's path last.
{{prelude}}
{{toolchains}}
for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool is missing: install Node.js 20 or later (node and npm)" >&2
    exit 1
  fi
done

# The toolchain is there when every package package.json pins is installed
# at that version. Delete the toolchain directory to install it afresh.
toolchain="$toolchains/componentize-js"
installed() {
  node -e '
    const fs = require("fs"), path = require("path");
    const [dir, manifest] = process.argv.slice(1);
    const pins = JSON.parse(fs.readFileSync(manifest, "utf8")).devDependencies || {};
    for (const [name, version] of Object.entries(pins)) {
      const file = path.join(dir, "node_modules", name, "package.json");
      try {
        if (JSON.parse(fs.readFileSync(file, "utf8")).version !== version) process.exit(1);
      } catch { process.exit(1); }
    }' "$toolchain" package.json
}
lock_toolchains
# Its programs run as you: never a toolchain (or a link to one) that
# someone else could change.
if [ -e "$toolchain" ] || [ -L "$toolchain" ]; then
  need_trusted_dir "$toolchain"
fi
if ! installed; then
  echo "$0: installing the toolchain of package-lock.json into $toolchain" >&2
  mkdir -p "$toolchain"
  cp package.json package-lock.json "$toolchain/"
  (cd "$toolchain" && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
need_trusted_dir "$toolchain" "$toolchain/node_modules"
unlock_toolchains
if [ -d node_modules ] && [ ! -L node_modules ]; then
  echo "$0: node_modules/ here is a directory: remove it (the build reaches its toolchain, $toolchain, through a link of that name)" >&2
  exit 1
fi
ln -sfn "$toolchain/node_modules" node_modules

up_to_date "$( (hash router.js build.mjs build.sh package-lock.json wit/*.wit; node --version) |
  sha256sum | cut -d' ' -f1)"
node build.mjs "$out.partial" >&2
mv "$out.partial" "$out"
built
