"""Where the module's tests and bench find the components this checkout
built (the Rust guests by the `tests` crate's build script, the example
router in JavaScript and Python by its own `build.sh`; `e2e/run.sh` builds
them all), and the compiled-component cache they share. `E2E_GUESTS_DIR`
points elsewhere for the Rust guests.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUESTS = Path(os.environ.get("E2E_GUESTS_DIR")
              or REPO / "target" / "guests" / "wasm32-wasip2" / "release")
# Under target/, not in the home directory (the module's default).
# The cache the Rust tests fill (tests/src/guests.rs): the same
# components, compiled once. `E2E_CACHE_DIR` points elsewhere (the wheel
# test: the wheel's own wasmtime compiles them).
CACHE_DIR = os.environ.get("E2E_CACHE_DIR") or str(REPO / "target" / "guests" / "component-cache")


def example_router_in(language: str) -> str:
    """The path of the example router built from examples/routers/<language>/."""
    path = REPO / "target" / "guests" / language / "example_router.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it first (synapse-module/e2e/run.sh does)")
    return str(path)


def guest(name: str) -> str:
    """The path of the built component `name`.wasm."""
    path = GUESTS / f"{name}.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build the guests first (synapse-module/e2e/run.sh does)")
    return str(path)
