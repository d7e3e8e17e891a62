# Sourced by the build scripts that run a toolchain from a directory of
# their own: the example routers' virtualenvs under target/toolchains and
# the JavaScript example's node_modules; in a project `presence-router new`
# wrote, its .toolchain/ or PRESENCE_ROUTER_TOOLCHAINS (there this file is
# part of build.sh). Defines:
#
#   need_trusted_dir DIR...  stops the build, naming the directory, unless
#                            only you and root can change each DIR

# What a toolchain directory holds runs as you, so whoever else can change
# it runs code as you. The rule is the one presence-router applies to
# component files (and its compiled-component cache): OpenSSH's
# StrictModes. DIR, links resolved, belongs to you or root and nobody else
# can write it; so does every directory above it, unless that one is
# sticky (as /tmp, where only an entry's owner may rename or delete it).
need_trusted_dir() {
  local dir real at owner mode me named
  me="$(id -u)"
  for dir in "$@"; do
    if ! real="$(cd -P -- "$dir" 2>/dev/null && pwd)"; then
      echo "$0: cannot open the toolchain directory $dir" >&2
      exit 1
    fi
    named="$real"
    [ "$dir" = "$real" ] || named="$dir (= $real)"
    at="$real"
    while :; do
      owner= mode=
      # GNU stat, else BSD's (special bits, then permissions).
      read -r owner mode < <(stat -c '%u %a' -- "$at" 2>/dev/null ||
        stat -f '%u %Mp%Lp' -- "$at" 2>/dev/null) || true
      if [ -z "${mode:-}" ]; then
        echo "$0: cannot examine $at, which holds the toolchain directory $named" >&2
        exit 1
      fi
      if [ "$owner" != "$me" ] && [ "$owner" != 0 ]; then
        if [ "$at" = "$real" ]; then
          echo "$0: refused: the toolchain directory $named is owned by uid $owner (mode $mode), not by you (uid $me) or root: its owner could change the programs this build runs as you; remove it, or use a toolchain directory of your own" >&2
        else
          echo "$0: refused: the toolchain directory $named is in $at, owned by uid $owner (mode $mode), not by you (uid $me) or root: its owner could replace the programs this build runs as you; keep toolchains under directories only you and root can write" >&2
        fi
        exit 1
      fi
      if ((8#$mode & 8#022)); then
        if [ "$at" = "$real" ]; then
          echo "$0: refused: the toolchain directory $named is writable by group or others (mode $mode): another user could change the programs this build runs as you; \`chmod -R go-w $real\` if only you wrote it, or remove it" >&2
          exit 1
        elif ! ((8#$mode & 8#1000)); then
          echo "$0: refused: the toolchain directory $named is in $at, writable by others (mode $mode) without the sticky bit: another user could replace the programs this build runs as you; keep toolchains under directories only you and root can write" >&2
          exit 1
        fi
      fi
      [ "$at" != / ] || break
      at="$(dirname -- "$at")"
    done
  done
}
