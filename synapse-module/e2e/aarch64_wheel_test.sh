#!/usr/bin/env bash
# Imports the aarch64 wheel's extension in an arm64 CPython under qemu-user
# and routes a batch through the example router with it: the wheel's code
# runs, on the architecture it was built for, on this x86_64 machine.
#
#   synapse-module/e2e/aarch64_wheel_test.sh WHEEL
#   synapse-module/e2e/aarch64_wheel_test.sh --prepare   # only what it needs
#
# Needs Debian's qemu-user-static and arm64 packages (multiarch). As root
# it installs qemu-user-static, adds the arm64 architecture to dpkg (a
# lasting change to the machine's apt configuration: `dpkg
# --remove-architecture arm64` undoes it), and unpacks Debian's arm64
# python3 and the libraries it needs into target/toolchains/arm64-root
# (nothing arm64 is installed on the machine); otherwise, without them, it
# says so and exits 3. Synapse itself is not
# installed for arm64: the extension is loaded on its own
# (wheel_test.sh runs the whole module under a real Synapse on x86_64).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
if [[ $# -ne 1 || ($1 != --prepare && ! -f "$1") ]]; then
  echo "usage: $0 WHEEL|--prepare (no wheel at '${1:-}')" >&2
  exit 2
fi
root="$REPO/target/toolchains/arm64-root"

unavailable() {
  echo "aarch64_wheel_test: cannot run arm64 code here ($1): the aarch64 wheel is checked by auditwheel alone" >&2
  exit 3
}

if ! command -v qemu-aarch64-static >/dev/null; then
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || unavailable "no qemu-user-static, and not root to install it"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi
if [[ ! -x "$root/usr/bin/python3" ]]; then
  [[ "$(id -u)" == 0 ]] || unavailable "no arm64 python3 in $root, and not root to add the arm64 architecture"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq >&2
  fi
  debs="$(mktemp -d)"
  # apt downloads as its own unprivileged user, who must write here.
  if id _apt >/dev/null 2>&1; then chown _apt "$debs"; fi
  # python3 and everything it depends on, as arm64 packages: downloaded and
  # unpacked, never installed.
  mapfile -t packages < <(apt-cache depends --recurse --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances python3:arm64 libgcc-s1:arm64 |
    grep -E '^[a-z0-9][^ <]*:arm64$' | sort -u)
  (cd "$debs" && apt-get download -qq "${packages[@]}" >&2)
  rm -rf "$root.partial"
  mkdir -p "$root.partial"
  for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$root.partial"; done
  rm -rf "$debs" "$root"
  mv "$root.partial" "$root"
fi

[[ "$1" == --prepare ]] && exit 0
wheel="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
component="${CARGO_TARGET_DIR:-$REPO/target}/guests/wasm32-wasip2/release/example_router.wasm"
[[ -f "$component" ]] || { echo "$0: $component is missing: cargo build -p presence-router-tests" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python3 -m zipfile -e "$wheel" "$work/site"
native="$(ls "$work"/site/wasm_presence_router/_native*.so)"
file "$native" | grep -q 'ARM aarch64' || { echo "$0: $native is not an aarch64 library: $(file "$native")" >&2; exit 1; }
cp "$component" "$work/example_router.wasm"
cat >"$work/check.py" <<'EOF'
"""Loads the wheel's extension alone and routes one batch."""
import importlib.util
import json
import platform
import sys

native_path, work = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("wasm_presence_router._native", native_path)
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
assert platform.machine() == "aarch64", platform.machine()


class State:
    """What the extension reads of Synapse's UserPresenceState."""

    def __init__(self, user_id, state):
        self.user_id, self.state = user_id, state
        self.last_active_ts = self.last_federation_update_ts = self.last_user_sync_ts = 0
        self.status_msg, self.currently_active = None, False


config = {"routers": [{"component": "example_router.wasm", "config": {
    "always_send_to_users": ["@alice:example.com"], "blacklisted_users": ["@mallory:example.com"]}}]}
routers = native.RouterSet.load(json.dumps(config), source="check", base_dir=work, cache=False,
                                compile_on_calling_thread=True)
states = [State("@bob:example.com", "online"), State("@mallory:example.com", "online")]
answer = routers.get_users_for_states(states)
assert {user: set(s.user_id for s in routed) for user, routed in answer.routes.items()} == {
    "@alice:example.com": {"@bob:example.com"}}, answer.routes
interest = routers.get_interested_users("@alice:example.com")
assert interest.all_users, interest.users
print(f"aarch64_wheel_test: {native.__version__} routed on {platform.machine()} "
      f"(CPython {platform.python_version()} under qemu-user)")
EOF
qemu-aarch64-static -L "$root" "$root/usr/bin/python3" "$work/check.py" "$native" "$work"
