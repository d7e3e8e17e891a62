"""Synapse's own presence-router tests, passed by our module.

Takes `tests/events/test_presence_router.py` (and the test harness it needs)
from the matrix-synapse sdist of the Synapse version installed here, fetched
from PyPI by pip at test time into `target/` (never committed), and runs it
twice with trial: as shipped, with its Python test routers; and with those
routers replaced by our module running `tests/guests/synapse-test-router`
(`synapse_own_suite.py`). Every case that passes as shipped must pass with
ours.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List

import synapse

from built_guests import REPO

SUITE = "tests.events.test_presence_router"
HERE = Path(__file__).resolve().parent


def synapse_tests() -> Path:
    """The `tests` package of the installed Synapse's sdist, unpacked under
    target/ (once per version)."""
    version = synapse.__version__.split(" ")[0]
    root = REPO / "target" / "synapse-own-tests" / version
    if (root / "tests" / "events" / "test_presence_router.py").is_file():
        return root
    sdist_dir = REPO / "target" / "synapse-sdist"
    sdist = sdist_dir / f"matrix_synapse-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
             "--no-deps", "--no-binary", "matrix-synapse", f"matrix-synapse=={version}",
             "-d", str(sdist_dir)],
            check=True, timeout=120)
    prefix = f"matrix_synapse-{version}/"
    partial = root.with_name(root.name + ".partial")
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix + "tests/")]
        for member in members:
            member.name = member.name[len(prefix):]
        archive.extractall(partial, members=members, filter="data")
    partial.rename(root)
    return root


def trial(root: Path, command: List[str]) -> Dict[str, str]:
    """Runs trial; returns each test's name and its outcome (`OK`, `FAIL`...)."""
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(root), str(HERE.parent)])}
    done = subprocess.run([sys.executable, *command, SUITE], cwd=root, env=env,
                          capture_output=True, text=True, timeout=150)
    outcomes = dict(re.findall(r"^\s+(test_\w+) \.\.\.\s+\[(\w+)\]", done.stdout, re.M))
    assert outcomes, f"trial ran no test:\n{done.stdout}\n{done.stderr}"
    return outcomes


def test_synapse_own_presence_router_tests_pass_with_our_module() -> None:
    root = synapse_tests()
    shipped = trial(root, ["-m", "twisted.trial"])
    ours = trial(root, [str(HERE / "synapse_own_suite.py")])
    passing = sorted(name for name, outcome in shipped.items() if outcome == "OK")
    assert passing, shipped
    assert {name: ours.get(name) for name in passing} == {name: "OK" for name in passing}, (
        f"as shipped: {shipped}\nwith our module: {ours}")
