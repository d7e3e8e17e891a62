# presence-router writes the WIT bindings and makes the component: the one
# that generated this project, or the one on PATH if that one is gone, or
# the one PRESENCE_ROUTER names.
if [ -z "${PRESENCE_ROUTER:-}" ]; then
  PRESENCE_ROUTER={{presence_router}}
  [ -x "$PRESENCE_ROUTER" ] || PRESENCE_ROUTER=presence-router
fi
if ! command -v "$PRESENCE_ROUTER" >/dev/null; then
  echo "$0: cannot find $PRESENCE_ROUTER: put presence-router on PATH or set PRESENCE_ROUTER to its path" >&2
  exit 1
fi
