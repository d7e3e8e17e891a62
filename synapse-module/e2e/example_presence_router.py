"""The documentation's ExamplePresenceRouter, as a Synapse module.

The Python reference for the e2e test (test_e2e.py): the same assertions
run against these Python routers and against the wasm module running the
`examples/routers/rust` component, so the wasm module is shown to do what Synapse's
own Python routers do.

Options (both optional, lists of Matrix user IDs):

* ``always_send_to_users``: these users receive every presence update routed
  by this module, and ``get_interested_users`` answers ``ALL_USERS`` for them.
* ``blacklisted_users``: updates *from* these users are never routed by this
  module (room-based delivery is untouched).

Two ways to load it (see README.md):

* ``modules:`` form -> ``ExamplePresenceRouter`` (registers its callbacks
  through ``ModuleApi.register_presence_router_callbacks`` in ``__init__``).
* legacy ``presence: presence_router:`` form -> ``LegacyExamplePresenceRouter``
  (Synapse itself looks the two methods up by name and registers them, so
  registering again in ``__init__`` would run every callback twice).

Differences from the docs' listing, on purpose:

* The docs filter on ``update.state_key``; ``UserPresenceState`` has no such
  attribute (it is ``user_id``). Copied verbatim, the callback raises
  AttributeError, Synapse logs and skips it, and the ``ALL_USERS`` sync path
  then dies with ``KeyError`` for the listed user.
* The docs store ``None`` when an option is absent; here absent means ``[]``,
  and non-list / non-string values are refused with ``ConfigError``.
* The constructor parameter is named ``module_api`` because the legacy loader
  instantiates with keywords: ``module(config=config, module_api=api)``.
"""

from typing import Dict, Iterable, List, Set, Union

from synapse.module_api import PRESENCE_ALL_USERS, ModuleApi, UserPresenceState
from synapse.module_api.errors import ConfigError


class PresenceRouterConfig:
    def __init__(self) -> None:
        # A list of users to always send all user presence updates to
        self.always_send_to_users: List[str] = []
        # A list of users to ignore presence updates for. Does not affect
        # shared-room presence relationships
        self.blacklisted_users: List[str] = []


def _user_list(config_dict: dict, key: str) -> List[str]:
    value = config_dict.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise ConfigError(f"'{key}' must be a list of user IDs", path=(key,))
    for user_id in value:
        if not user_id.startswith("@") or ":" not in user_id:
            raise ConfigError(f"'{key}': not a Matrix user ID: {user_id!r}", path=(key,))
    return list(value)


class ExamplePresenceRouter:
    """Route all (non-blacklisted) presence to ``always_send_to_users``."""

    # Whether __init__ registers the callbacks itself (the `modules:` form).
    _register_in_init = True

    def __init__(self, config: PresenceRouterConfig, module_api: ModuleApi):
        self._config = config
        self._module_api = module_api
        self._blacklisted = frozenset(config.blacklisted_users)
        if self._register_in_init:
            module_api.register_presence_router_callbacks(
                get_users_for_states=self.get_users_for_states,
                get_interested_users=self.get_interested_users,
            )

    @staticmethod
    def parse_config(config_dict: dict) -> PresenceRouterConfig:
        if not isinstance(config_dict, dict):
            raise ConfigError("expected a mapping")
        config = PresenceRouterConfig()
        config.always_send_to_users = _user_list(config_dict, "always_send_to_users")
        config.blacklisted_users = _user_list(config_dict, "blacklisted_users")
        return config

    async def get_users_for_states(
        self,
        state_updates: Iterable[UserPresenceState],
    ) -> Dict[str, Set[UserPresenceState]]:
        # Ignore any updates for blacklisted users
        desired_updates = {
            update for update in state_updates if update.user_id not in self._blacklisted
        }
        # Send all presence updates to specific users. Every listed user gets
        # an entry, even for an empty batch: Synapse's ALL_USERS sync path
        # indexes this dict by the syncing user and would KeyError otherwise.
        return {user_id: set(desired_updates) for user_id in self._config.always_send_to_users}

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        if user_id in self._config.always_send_to_users:
            return PRESENCE_ALL_USERS
        return set()


class LegacyExamplePresenceRouter(ExamplePresenceRouter):
    """Same router for the legacy ``presence.presence_router`` config form."""

    _register_in_init = False


__all__ = [
    "ExamplePresenceRouter",
    "LegacyExamplePresenceRouter",
    "PresenceRouterConfig",
]
