"""A Synapse presence router class run without Synapse, for
`presence-router test --against python:MODULE.CLASS`.

Run as ``python -c <this> MODULE.CLASS``, with the configuration (JSON) as
the first line on stdin. It makes the router as
Synapse does (``parse_config``, then the class with its config and a
``ModuleApi``), writes ``{"ready": true}`` (or ``{"error": ...}`` and exits),
then answers one JSON line per request line on stdin, in the JSON Lines
request format of ``presence-router route``:

* ``{"get_users_for_states": [STATE, ...]}`` -> ``{"routes": {USER: [INDEX, ...]}, "sends": [...]}``
* ``{"get_interested_users": USER}`` -> ``{"interested": "ALL" | [USER, ...], "sends": [...]}``
* a callback that raises or answers what Synapse would not take -> ``{"error": TEXT}``

Where the interpreter has Synapse, its own ``UserPresenceState`` and
``ModuleApi`` constants are used; elsewhere, stand-ins with the same names
and fields. Callbacks are coroutines run to completion on one event loop: a
router that awaits Synapse's own machinery (the database, federation) can't
be run this way.
"""

import asyncio
import importlib
import inspect
import json
import os
import sys
import traceback
import types
from dataclasses import dataclass
from typing import Optional

ALL_USERS = "ALL"


def _stand_ins():
    """Synapse's module API names a presence router imports, where Synapse
    is not installed."""
    try:
        from synapse.api.presence import UserPresenceState  # noqa: F401
        import synapse.module_api  # noqa: F401

        return UserPresenceState
    except ImportError:
        pass

    @dataclass(frozen=True)
    class UserPresenceState:
        user_id: str
        state: str
        last_active_ts: int = 0
        last_federation_update_ts: int = 0
        last_user_sync_ts: int = 0
        status_msg: Optional[str] = None
        currently_active: bool = False

    class ConfigError(Exception):
        def __init__(self, msg, path=None):
            super().__init__(msg)
            self.msg = msg
            self.path = path

    class ModuleApi:
        pass

    class PresenceRouter:
        ALL_USERS = ALL_USERS

    def module(name, **names):
        mod = types.ModuleType(name)
        mod.__dict__.update(names)
        sys.modules[name] = mod
        return mod

    module("synapse")
    module("synapse.api")
    module("synapse.api.presence", UserPresenceState=UserPresenceState)
    module("synapse.api.errors", ConfigError=ConfigError)
    module("synapse.config")
    module("synapse.config._base", ConfigError=ConfigError)
    module("synapse.handlers")
    module("synapse.handlers.presence", UserPresenceState=UserPresenceState)
    module("synapse.events")
    module("synapse.events.presence_router", PresenceRouter=PresenceRouter)
    module(
        "synapse.module_api",
        ModuleApi=ModuleApi,
        UserPresenceState=UserPresenceState,
        PRESENCE_ALL_USERS=ALL_USERS,
    )
    module("synapse.module_api.errors", ConfigError=ConfigError)
    return UserPresenceState


class _Api:
    """The ``ModuleApi`` the router is made with: it may register its
    callbacks and send presence; nothing else of Synapse's is here."""

    def __init__(self):
        self.callbacks = {}
        self.sends = []

    def register_presence_router_callbacks(self, get_users_for_states=None,
                                           get_interested_users=None):
        self.callbacks = {
            "get_users_for_states": get_users_for_states,
            "get_interested_users": get_interested_users,
        }

    async def send_local_online_presence_to(self, users):
        self.sends.extend(users)

    def __getattr__(self, name):
        raise AttributeError(
            f"ModuleApi.{name} is not available outside Synapse "
            "(presence-router test runs the router alone)")


def _make(spec, config):
    module_name, _, class_name = spec.rpartition(".")
    if not module_name:
        raise ValueError(f"{spec!r}: expected MODULE.CLASS")
    cls = getattr(importlib.import_module(module_name), class_name)
    if hasattr(cls, "parse_config"):
        config = cls.parse_config(config)
    api = _Api()
    router = cls(config, api)
    # Registered callbacks are awaited by Synapse; a legacy router's methods
    # may also be plain functions (Synapse's `maybe_awaitable`).
    callbacks = {
        name: (api.callbacks.get(name), True) if api.callbacks.get(name)
        else (getattr(router, name, None), False)
        for name in ("get_users_for_states", "get_interested_users")
    }
    missing = [name for name, (callback, _) in callbacks.items() if callback is None]
    if missing:
        raise ValueError(f"{spec} has no {missing[0]} (registered or as a method)")
    return api, callbacks


def _routes(answer, batch):
    """The answer's states as indices into the batch (the object passed in,
    or else the first equal one), kept as Synapse keeps them: an answer
    that is not a dict is the router failing, and a user whose states are
    not a set ends the answer there."""
    if not isinstance(answer, dict):
        raise TypeError(f"get_users_for_states answered {type(answer).__name__}, not a dict")
    by_id = {id(state): i for i, state in enumerate(batch)}
    routes = {}
    for user, states in answer.items():
        if not isinstance(user, str) or not isinstance(states, set):
            break
        indices = []
        for state in states:
            index = by_id.get(id(state))
            if index is None:
                index = next((i for i, s in enumerate(batch) if s == state), None)
            if index is None:
                raise ValueError(f"routes to {user} a state that is not in the batch: {state!r}")
            indices.append(index)
        routes[user] = sorted(set(indices))
    return routes


def _interest(answer):
    """As Synapse takes it: ALL_USERS, or a set of user IDs."""
    if answer == ALL_USERS:
        return ALL_USERS
    if not isinstance(answer, set):
        raise TypeError(f"get_interested_users answered {type(answer).__name__}, not a set")
    if not all(isinstance(user, str) for user in answer):
        raise TypeError("get_interested_users answered a set with something not a user ID")
    return sorted(answer)


def _call(loop, callback, argument):
    """A callback's result, as Synapse gets it: a registered callback must
    return an awaitable, a legacy router's method may return its answer."""
    function, registered = callback
    value = function(argument)
    if inspect.isawaitable(value):
        return loop.run_until_complete(value)
    if registered:
        raise TypeError(f"{function.__name__} is registered but not async: Synapse awaits it")
    return value


def main():
    # The protocol has the real stdout to itself: whatever the router
    # writes, through `print` or to file descriptor 1, goes to stderr, where
    # the author sees it.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    state_class = _stand_ins()
    # The configuration is the first line on stdin: an argument could be
    # too long for the system.
    spec, config = sys.argv[1], json.loads(sys.stdin.readline())
    try:
        api, callbacks = _make(spec, config)
    except Exception as e:  # the router's own refusal, or an import error
        out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()
        return
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    loop = asyncio.new_event_loop()
    for line in sys.stdin:
        request = json.loads(line)
        api.sends = []
        try:
            if "get_users_for_states" in request:
                batch = [state_class(**state) for state in request["get_users_for_states"]]
                answer = _call(loop, callbacks["get_users_for_states"], batch)
                reply = {"routes": _routes(answer, batch)}
            else:
                user = request["get_interested_users"]
                answer = _call(loop, callbacks["get_interested_users"], user)
                reply = {"interested": _interest(answer)}
            if not all(isinstance(user, str) for user in api.sends):
                raise TypeError("send_local_online_presence_to was given something not a user ID")
            # A failed call's sends are not acted on, as the runtime's.
            reply["sends"] = sorted(set(api.sends))
        except Exception as e:
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
            reply = {"error": f"{type(e).__name__}: {e}{where}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


main()
