"""The Python reference for the e2e test's second router: the router of
Synapse's own ``tests/events/test_presence_router.py``
(``PresenceRouterTestModule``), as the ``synapse-test-router`` guest is in
wasm.

Config: ``users_who_should_receive_all_presence: [user IDs]``, and optionally
``send_on_status_msg: {status_msg, users}``.

* ``get_users_for_states``: every listed user gets every state of the batch
  (the entry exists even for an empty batch).
* ``get_interested_users``: ``ALL_USERS`` for a listed user, else ``set()``.
* ``send_on_status_msg``: when a state in a batch carries ``status_msg``, the
  router calls ``ModuleApi.send_local_online_presence_to(users)``, once per
  sender and ``last_active_ts`` (the snapshot it causes carries the same
  state back through this router). This stands in for the peer suite's own
  call of that function, so that a wasm guest can make it too.
"""

from typing import Dict, Iterable, List, Optional, Set, Tuple, Union

from synapse.module_api import PRESENCE_ALL_USERS, ModuleApi, UserPresenceState
from synapse.module_api.errors import ConfigError


class PeerTestConfig:
    def __init__(self, users: List[str], send_on: Optional[Tuple[str, List[str]]]):
        self.users = users
        self.send_on = send_on


def _user_list(value: object, path: Tuple[str, ...]) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise ConfigError("expected a list of user IDs", path=path)
    return value


class PeerTestPresenceRouter:
    def __init__(self, config: PeerTestConfig, module_api: ModuleApi):
        self._config = config
        self._module_api = module_api
        self._sent_for: Set[Tuple[str, int]] = set()
        module_api.register_presence_router_callbacks(
            get_users_for_states=self.get_users_for_states,
            get_interested_users=self.get_interested_users,
        )

    @staticmethod
    def parse_config(config_dict: dict) -> PeerTestConfig:
        config_dict = config_dict or {}
        key = "users_who_should_receive_all_presence"
        users = _user_list(config_dict.get(key, []), (key,))
        send_on = None
        if config_dict.get("send_on_status_msg") is not None:
            spec = config_dict["send_on_status_msg"]
            if not isinstance(spec, dict) or not isinstance(spec.get("status_msg"), str):
                raise ConfigError("expected {status_msg, users}", path=("send_on_status_msg",))
            send_on = (
                spec["status_msg"],
                _user_list(spec.get("users"), ("send_on_status_msg", "users")),
            )
        return PeerTestConfig(users, send_on)

    async def get_users_for_states(
        self, state_updates: Iterable[UserPresenceState]
    ) -> Dict[str, Set[UserPresenceState]]:
        states = set(state_updates)
        if self._config.send_on is not None:
            status_msg, send_to = self._config.send_on
            for state in states:
                key = (state.user_id, state.last_active_ts)
                if state.status_msg == status_msg and key not in self._sent_for:
                    self._sent_for.add(key)
                    self._module_api.delayed_background_call(
                        0, self._module_api.send_local_online_presence_to, send_to,
                        desc="peer_router_send_local_online_presence_to",
                    )
        return {user_id: set(states) for user_id in self._config.users}

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        if user_id in self._config.users:
            return PRESENCE_ALL_USERS
        return set()
