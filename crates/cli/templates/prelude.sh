set -euo pipefail

if [ $# -gt 1 ]; then
  echo "usage: $0 [OUT_DIR]   (default: build/ beside this script)" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "${1:-$here/build}"
out_dir="$(cd "${1:-$here/build}" && pwd)"
cd "$here"
# One build at a time: lock this script itself, so no lock file is left
# around.
if command -v flock >/dev/null; then
  exec 9<"$here/build.sh"
  flock 9
fi
out="$out_dir/{{component}}"
hash() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }
# The component is up to date when it is there and was built from the same
# inputs (sources, this script, the WIT, the toolchain): say so and stop.
up_to_date() {
  inputs_stamp="$out.inputs"
  inputs_hash="$1"
  if [ -f "$out" ] && [ -f "$inputs_stamp" ] && [ "$(cat "$inputs_stamp")" = "$inputs_hash" ]; then
    echo "$out is up to date" >&2
    echo "$out"
    exit 0
  fi
  rm -f "$inputs_stamp"
}
# Records what the component was built from, and prints its path: the last
# line of the output, for scripts.
built() {
  echo "$inputs_hash" >"$inputs_stamp"
  echo "$out"
}
