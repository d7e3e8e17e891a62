# Sourced by scripts/test.sh and .ci/run: `phase NAME COMMAND...` runs one
# phase and records its wall-clock and CPU time; the table of every phase run
# so far is printed when the script exits (also when a phase failed), so the
# next person sees where the time goes.
# shellcheck shell=bash

PHASES=()

phase() {
  local name="$1"
  shift
  local start cpu_before cpu_after status=0
  start=$(date +%s)
  phase_cpu_seconds
  cpu_before=$PHASE_CPU
  echo "=== phase: $name" >&2
  strictly "$@" || status=$?
  phase_cpu_seconds
  cpu_after=$PHASE_CPU
  PHASES+=("$(printf '%-14s %6d s wall %7d s CPU%s' "$name" \
    $(($(date +%s) - start)) $((cpu_after - cpu_before)) \
    "$( ((status)) && echo "  (failed: exit $status)")")")
  return "$status"
}

# `strictly COMMAND...`: runs it in a shell of its own with `-e` on and the
# script's functions defined (a function may call others). A command on the
# left of `||` runs with `set -e` off, so a function run there would go on
# past its first failure; its callers test its status with `||`.
strictly() {
  bash -euo pipefail -c "$(declare -f)"$'\n''"$@"' strictly "$@"
}

# Sets PHASE_CPU to the CPU seconds (user + system) of this shell's finished
# children. `times` must run in this shell, not in a command substitution's
# subshell (whose children are not these).
phase_cpu_seconds() {
  local out
  out=$(mktemp)
  times >"$out"
  # The second line, e.g. "12m3.450s 0m40.120s", is the children's.
  PHASE_CPU=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, p, /[ms]/); t += p[1] * 60 + p[2] } printf "%d", t }' "$out")
  rm -f "$out"
}

phase_summary() {
  ((${#PHASES[@]})) || return 0
  echo "=== time per phase" >&2
  printf '%s\n' "${PHASES[@]}" >&2
}
trap phase_summary EXIT
