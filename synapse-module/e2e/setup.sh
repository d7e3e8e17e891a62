#!/usr/bin/env bash
# Creates (or finds) the Python virtualenv that runs a real Synapse for the
# e2e test; `bash scripts/setup.sh` runs it. Says on stdout what it found or
# installed (one `found: ...` or `installed: ...` line).
#
#   synapse-module/e2e/setup.sh            # idempotent
#   synapse-module/e2e/setup.sh --check    # installs nothing: exit status 3
#                                          # if the venv is missing or stale
#   PYTHON=/path/to/python3.11 setup.sh    # choose the interpreter (>= 3.10)
#   SYNAPSE_VENV=/some/dir setup.sh        # choose the venv location
#
# The venv is current as long as requirements.txt + constraints.txt are
# unchanged (a copy of both is kept as a stamp inside the venv).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${SYNAPSE_VENV:-$REPO/target/toolchains/synapse-venv}"
STAMP="$VENV/.e2e-requirements.stamp"
WHAT="Synapse and the e2e test's packages (synapse-module/e2e/requirements.txt) in $VENV"

case "${1:-}" in
  "") check_only= ;;
  --check) check_only=1 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

pick_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  for p in python3.11 python3.12 python3.13 python3.10 python3; do
    if command -v "$p" >/dev/null 2>&1; then echo "$p"; return; fi
  done
  echo "setup.sh: no python3 found" >&2; exit 1
}

want="$(cat "$HERE/requirements.txt" "$HERE/constraints.txt")"
if [[ -x "$VENV/bin/python" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]] \
   && "$VENV/bin/python" -c 'import synapse, httpx, pytest, psycopg2, txredisapi' 2>/dev/null; then
  echo "found: $WHAT"
  exit 0
fi
if [[ -n "$check_only" ]]; then
  echo "missing: $WHAT (or it is stale)"
  exit 3
fi

PY="$(pick_python)"
"$PY" - <<'PYEOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup.sh: Synapse needs Python >= 3.10, got {sys.version.split()[0]}")
PYEOF

echo "setup.sh: building $VENV with $("$PY" --version 2>&1)" >&2
start=$(date +%s)
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
printf '%s' "$want" > "$STAMP"
echo "setup.sh: installed in $(( $(date +%s) - start ))s" >&2
echo "installed: $WHAT"
