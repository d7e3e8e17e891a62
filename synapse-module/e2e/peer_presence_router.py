"""Second router for the e2e harness: the router of Synapse's own
``tests/events/test_presence_router.py`` (``PresenceRouterTestModule``), plus
a test-only HTTP trigger for ``ModuleApi.send_local_online_presence_to``.

Config: ``users_who_should_receive_all_presence: [user IDs]``.

* ``get_users_for_states``: every listed user gets every state of the batch
  (the entry exists even for an empty batch).
* ``get_interested_users``: ``ALL_USERS`` for a listed user, else ``set()``.

Loaded next to ExamplePresenceRouter it also exercises Synapse's merging of
several routers (answers unioned per user; the blacklist of one router does
not filter what another router routes).

The trigger: ``POST /_synapse/client/wasm_presence_router_e2e/send_local_online_presence_to``
with ``{"users": [...]}`` awaits ``module_api.send_local_online_presence_to(users)``.
It is unauthenticated: only ever load this module on a loopback test server.
"""

from typing import Dict, Iterable, List, Set, Tuple, Union

from synapse.module_api import (
    PRESENCE_ALL_USERS,
    DirectServeJsonResource,
    ModuleApi,
    UserPresenceState,
    parse_json_object_from_request,
)
from synapse.module_api.errors import ConfigError

TRIGGER_PATH = "/_synapse/client/wasm_presence_router_e2e/send_local_online_presence_to"


class _SendPresenceResource(DirectServeJsonResource):
    def __init__(self, module_api: ModuleApi):
        super().__init__()
        self._module_api = module_api

    async def _async_render_POST(self, request) -> Tuple[int, dict]:  # noqa: N802
        body = parse_json_object_from_request(request)
        users = body.get("users")
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            return 400, {"error": "'users' must be a list of user IDs"}
        await self._module_api.send_local_online_presence_to(users)
        return 200, {"sent_to": users}


class PeerTestPresenceRouter:
    def __init__(self, config: List[str], module_api: ModuleApi):
        self._users = list(config)
        self._module_api = module_api
        module_api.register_presence_router_callbacks(
            get_users_for_states=self.get_users_for_states,
            get_interested_users=self.get_interested_users,
        )
        module_api.register_web_resource(TRIGGER_PATH, _SendPresenceResource(module_api))

    @staticmethod
    def parse_config(config_dict: dict) -> List[str]:
        users = (config_dict or {}).get("users_who_should_receive_all_presence", [])
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            raise ConfigError(
                "'users_who_should_receive_all_presence' must be a list of user IDs",
                path=("users_who_should_receive_all_presence",),
            )
        return users

    async def get_users_for_states(
        self, state_updates: Iterable[UserPresenceState]
    ) -> Dict[str, Set[UserPresenceState]]:
        states = set(state_updates)
        return {user_id: set(states) for user_id in self._users}

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        if user_id in self._users:
            return PRESENCE_ALL_USERS
        return set()
