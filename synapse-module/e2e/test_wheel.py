"""The module as an operator installs it: a wheel in a virtualenv of its
own, on a machine with no Rust toolchain. Run by ``wheel_test.sh``, which
installs the wheel and sets ``E2E_WHEEL_VENV`` and ``E2E_WHEEL_VERSION``;
skipped in any other run (the checkout's build is tested by the rest)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

VENV = os.environ.get("E2E_WHEEL_VENV")
pytestmark = pytest.mark.skipif(not VENV, reason="run by e2e/wheel_test.sh on an installed wheel")


def test_the_module_imported_is_the_installed_wheel_and_no_rust_is_on_path() -> None:
    import wasm_presence_router
    from wasm_presence_router import _native

    assert VENV is not None
    venv = Path(VENV).resolve()
    assert Path(sys.prefix).resolve() == venv
    native = Path(_native.__file__).resolve()
    assert venv in native.parents, native
    assert native.name == "_native.abi3.so", native
    assert wasm_presence_router.__version__ == os.environ["E2E_WHEEL_VERSION"]
    assert shutil.which("cargo") is None and shutil.which("rustc") is None


def test_a_real_synapse_routes_presence_through_the_wheel() -> None:
    from test_e2e import test_presence_routing_end_to_end as routes_end_to_end

    # The routers were compiled by this wheel's wasmtime, into this run's
    # own cache (wheel_test.sh made it empty).
    cache = Path(os.environ["E2E_CACHE_DIR"])
    assert not any(cache.iterdir()), cache
    routes_end_to_end("wasm-modules")
    assert any(cache.iterdir()), cache
