{{trusted_dir}}

# The toolchain is installed once, into .toolchain/ here, or into the
# directory PRESENCE_ROUTER_TOOLCHAINS names, which several projects (and
# the presence-router repository's target/toolchains) can share.
toolchains="${PRESENCE_ROUTER_TOOLCHAINS:-$here/.toolchain}"
mkdir -p "$toolchains"
toolchains="$(cd "$toolchains" && pwd)"
# Its programs run as you: never from a directory someone else could change.
need_trusted_dir "$toolchains"
# Installing into a toolchain directory another build may be using: one
# installation at a time (the lock is released when fd 8 is closed).
lock_toolchains() {
  if command -v flock >/dev/null; then
    exec 8<"$toolchains"
    flock 8
  fi
}
unlock_toolchains() {
  if command -v flock >/dev/null; then
    exec 8<&-
  fi
}
