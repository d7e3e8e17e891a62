#!/usr/bin/env bash
# Builds this router ({{name}}, src/app.py) into a component:
#
#     ./build.sh [OUT_DIR]   # -> OUT_DIR/{{component}} (default: build/)
#
# Needs python3 (3.10 or later) with venv and pip: the componentize-py that
# requirements.txt pins is installed into a virtualenv,
# .toolchain/componentize-py (or PRESENCE_ROUTER_TOOLCHAINS/componentize-py),
# made once and reused, reinstalled when requirements.txt changes. Skips the
# build when none of its inputs changed since the last one. Prints the
# component's path last.
{{prelude}}
{{toolchains}}
{{venv}}
venv="$toolchains/componentize-py"
need_venv "$venv"

# A build takes seconds, and its output differs every time, which would
# make the runtime compile it again: skip it when nothing changed.
up_to_date "$(hash src/*.py requirements.txt build.sh wit/*.wit)"
# The bindings (wit_world, componentize_py_types) are generated into the
# component from wit/ on every build; -p src finds app.py.
"$venv/bin/componentize-py" -d wit -w presence-router componentize app -p src -o "$out.partial" >&2
mv "$out.partial" "$out"
built
