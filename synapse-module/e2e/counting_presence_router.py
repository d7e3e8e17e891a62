"""A presence router that routes nothing and counts how often Synapse calls
it, for the e2e test of the wasm module's metrics (test_e2e.py,
``test_metrics_of_a_running_synapse_...``).

Listed before the wasm module in ``modules:``, it is called on every
``get_users_for_states`` and ``get_interested_users`` Synapse makes
(Synapse calls its presence routers in order, and stops early only after one
that answers ``ALL_USERS``, which this one never does), so its counts are
what the wasm module's calls must add up to, counted independently. They
are exported on Synapse's ``/_synapse/metrics`` beside the module's, as
``e2e_presence_router_invocations_total{callback}``, so one scrape reads
both.
"""

from typing import Dict, Iterable, Set, Union

from prometheus_client import Counter
from synapse.module_api import ModuleApi, UserPresenceState

# At import: Synapse imports a module once per process.
INVOCATIONS = Counter(
    "e2e_presence_router_invocations",
    "Calls Synapse made to this router's callbacks.",
    ["callback"],
)


class CountingPresenceRouter:
    def __init__(self, config: dict, api: ModuleApi):
        # Both series exist from the start, at 0.
        for callback in ("get_users_for_states", "get_interested_users"):
            INVOCATIONS.labels(callback=callback)
        api.register_presence_router_callbacks(
            get_users_for_states=self.get_users_for_states,
            get_interested_users=self.get_interested_users,
        )

    @staticmethod
    def parse_config(config: dict) -> dict:
        return config or {}

    async def get_users_for_states(
        self, state_updates: Iterable[UserPresenceState]
    ) -> Dict[str, Set[UserPresenceState]]:
        # The updates are not iterated: Synapse hands the same iterable to
        # the routers after this one.
        INVOCATIONS.labels(callback="get_users_for_states").inc()
        return {}

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        INVOCATIONS.labels(callback="get_interested_users").inc()
        return set()
