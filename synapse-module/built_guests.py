"""Where the module's tests and bench find the components this checkout
built (by the `tests` crate's build script; `e2e/run.sh` builds them), and
the compiled-component cache they share. `E2E_GUESTS_DIR` points elsewhere.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GUESTS = Path(os.environ.get("E2E_GUESTS_DIR")
              or REPO / "target" / "guests" / "wasm32-wasip2" / "release")
# Under target/, not in the home directory (the module's default).
CACHE_DIR = str(REPO / "target" / "e2e-cache")


def guest(name: str) -> str:
    """The path of the built component `name`.wasm."""
    path = GUESTS / f"{name}.wasm"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build the guests first (synapse-module/e2e/run.sh does)")
    return str(path)
