"""Runs Synapse's own presence-router tests with its Python test routers
replaced by our module.

Synapse's `tests/events/test_presence_router.py` (from the matrix-synapse
sdist, fetched at test time by `test_synapse_own_suite.py`, never kept in
this repository) defines two Python routers, `PresenceRouterTestModule` and
`LegacyPresenceRouterTestModule`, and configures them by their dotted
names. This script puts `WasmTestRouter` in their place, our module running
`tests/guests/synapse-test-router` (the same routing, as a wasm component,
with the same configuration keys), then hands the command line to trial.

    python synapse_own_suite.py [trial arguments]   # with the suite's root on sys.path
"""

from __future__ import annotations

import sys
from typing import Any, Dict

import tests.events.test_presence_router as synapse_suite
from twisted.scripts.trial import run

from built_guests import CACHE_DIR, guest
from wasm_presence_router import WasmPresenceRouter, WasmPresenceRouterConfig


class WasmTestRouter(WasmPresenceRouter):
    """Our module, configured the way the suite configures its routers:
    `{"users_who_should_receive_all_presence": [...]}`."""

    @staticmethod
    def parse_config(config: Dict[str, Any]) -> WasmPresenceRouterConfig:
        return WasmPresenceRouter.parse_config({
            "routers": [{
                "name": "synapse-test-router",
                "component": guest("synapse_test_router"),
                "config": dict(config),
            }],
            "cache_dir": CACHE_DIR,
        })


synapse_suite.PresenceRouterTestModule = WasmTestRouter  # type: ignore[misc]
synapse_suite.LegacyPresenceRouterTestModule = WasmTestRouter  # type: ignore[misc]

if __name__ == "__main__":
    sys.argv = ["trial", *sys.argv[1:]]
    run()
