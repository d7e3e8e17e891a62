"""Migrating from a Python presence router: the Python class serves as the
live version of a router, and its wasm port is tried in shadow beside it
until it has agreed with it on the operator's criteria.

A ``routers:`` entry with ``python:`` instead of ``component:``::

    - name: example
      python:
        module: my_routers.ExamplePresenceRouter   # importable by Synapse
        config: {...}                               # what it was given before
      canary:
        component: example.wasm                     # the port (required)
        config: {...}
        promote_after: 1000
        max_divergent: 0
        record_divergent: /var/lib/synapse/divergent.jsonl

The module makes the class as Synapse would (``parse_config``, then the
class with its config and the ``ModuleApi``), and registers its callbacks
with Synapse itself, so that Synapse merges its answers with the others'
as it always did. Each call the canary draws is copied, with the Python
router's answer, to the port, which runs on the runtime's own thread; the
comparison and the decision are the runtime's, as for any canary. Once the
port is promoted it joins the module's routers and the Python router is no
longer called; once it is rejected the Python router goes on alone.
``max_fuel_ratio`` does not apply (a Python router burns no fuel).
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any, Dict, Iterable, List, Optional, Set, Union

from synapse.module_api import PRESENCE_ALL_USERS, ModuleApi
from synapse.module_api.errors import ConfigError

from . import _native

logger = logging.getLogger("wasm_presence_router")


class PythonRouterSettings:
    """One ``routers:`` entry with ``python:``, checked."""

    def __init__(self, index: int, name: str, module: str, config: Any, canary: Any,
                 signed_by: Any = None):
        self.index = index
        self.name = name
        self.module = module
        self.config = config
        self.canary = canary
        self.signed_by = signed_by
        # The module's `trusted_keys` and `require_signatures`, which the
        # port is checked against as any router of the module.
        self.trusted_keys: Any = None
        self.require_signatures: Any = None

    @classmethod
    def parse(cls, index: int, entry: Dict[str, Any]) -> "PythonRouterSettings":
        where = ("routers", f"<item {index}>")
        unknown = sorted(set(entry) - {"name", "python", "canary", "signed_by"})
        if unknown:
            raise ConfigError(f"unknown key `{unknown[0]}` beside `python` (expected `name`, "
                              "`python`, `canary`, `signed_by`)", (*where, unknown[0]))
        name = entry.get("name")
        if not isinstance(name, str):
            raise ConfigError("a Python router needs a `name`", (*where, "name"))
        python = entry.get("python")
        if not isinstance(python, dict) or not isinstance(python.get("module"), str):
            raise ConfigError("expected a mapping with `module` (`package.Class`) and `config`",
                              (*where, "python"))
        extra = sorted(set(python) - {"module", "config"})
        if extra:
            raise ConfigError(f"unknown key `{extra[0]}`, expected `module` or `config`",
                              (*where, "python", extra[0]))
        canary = entry.get("canary")
        if not isinstance(canary, dict):
            raise ConfigError("a Python router is run here only as the live version of its "
                              "wasm port: give it a `canary:` with the port's `component`",
                              (*where, "canary"))
        return cls(index, name, python["module"], python.get("config") or {}, canary,
                   entry.get("signed_by"))

    def document(self) -> Dict[str, Any]:
        """What the runtime checks and loads the port from."""
        document: Dict[str, Any] = {"canary": self.canary}
        for key in ("signed_by", "trusted_keys", "require_signatures"):
            value = getattr(self, key)
            if value is not None:
                document[key] = value
        return document

    def router_class(self) -> Any:
        module_name, _, class_name = self.module.rpartition(".")
        where = ("routers", f"<item {self.index}>", "python", "module")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"cannot import `{self.module}`: {e}", where) from None


class _CapturingApi:
    """The ``ModuleApi`` a Python router is given: its own
    ``register_presence_router_callbacks`` are kept here (the module
    registers them, wrapped), everything else is Synapse's."""

    def __init__(self, api: ModuleApi):
        self._api = api
        self.callbacks: Dict[str, Any] = {}

    def register_presence_router_callbacks(self, **callbacks: Any) -> None:
        self.callbacks.update({k: v for k, v in callbacks.items() if v is not None})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


class PythonLiveRouter:
    """A Python presence router serving as the live version, its port on
    trial beside it."""

    def __init__(self, settings: PythonRouterSettings, canary: "_native.PythonCanary",
                 api: ModuleApi):
        self.settings = settings
        self.canary: Optional["_native.PythonCanary"] = canary
        # What the canary came to once its decision is applied (its
        # `stats()`): the port itself is dropped then.
        self.decided: Optional[tuple] = None
        self.promoted = False
        router_class = settings.router_class()
        config = settings.config
        parse = getattr(router_class, "parse_config", None)
        if parse is not None:
            config = parse(config)
        capturing = _CapturingApi(api)
        router = router_class(config, capturing)
        self._states = (capturing.callbacks.get("get_users_for_states")
                        or getattr(router, "get_users_for_states"))
        self._interest = (capturing.callbacks.get("get_interested_users")
                          or getattr(router, "get_interested_users"))
        api.register_presence_router_callbacks(
            get_users_for_states=self.get_users_for_states,
            get_interested_users=self.get_interested_users,
        )

    async def get_users_for_states(self, state_updates: Iterable[Any]) -> Dict[str, Set[Any]]:
        if self.promoted:
            return {}
        states = list(state_updates)
        answer = await self._states(states)
        canary = self.canary
        if canary is not None:
            # The port's side never costs the live answer.
            try:
                size = len(states) + sum(1 + len(routed) for routed in answer.values())
                if canary.draw("get_users_for_states", size):
                    indices = _positions(states, answer)
                    if indices is None:
                        canary.skip()
                    else:
                        canary.shadow_states(states, indices)
            except Exception as e:
                logger.debug("router `%s`: this call is not compared with its port: %s",
                             self.settings.name, e)
        return answer

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        if self.promoted:
            return set()
        answer = await self._interest(user_id)
        canary = self.canary
        if canary is not None:
            try:
                all_users = answer == PRESENCE_ALL_USERS
                size = 2 if all_users else 1 + len(answer)
                if canary.draw("get_interested_users", size):
                    canary.shadow_interest(
                        user_id, None if all_users else sorted({str(u) for u in answer}))
            except Exception as e:
                logger.debug("router `%s`: this call is not compared with its port: %s",
                             self.settings.name, e)
        return answer


def _positions(states: List[Any], answer: Dict[str, Iterable[Any]]
               ) -> Optional[Dict[str, List[int]]]:
    """The Python router's answer as positions in ``states``, as the
    runtime gives a wasm router's; ``None`` if it routes a state that is not
    of the batch (no port could answer that)."""
    by_identity = {id(state): i for i, state in reversed(list(enumerate(states)))}
    by_value: Optional[Dict[Any, int]] = None
    positions: Dict[str, List[int]] = {}
    for user, routed in answer.items():
        found = []
        for state in routed:
            i = by_identity.get(id(state))
            if i is None:
                if by_value is None:
                    try:
                        by_value = {s: j for j, s in reversed(list(enumerate(states)))}
                    except TypeError:
                        return None
                i = by_value.get(state)
                if i is None:
                    return None
            found.append(i)
        positions.setdefault(str(user), []).extend(found)
    for user, found in positions.items():
        positions[user] = sorted(set(found))
    return positions


def load_canary(settings: PythonRouterSettings, base_dir: str, cache_dir: Optional[str],
                cache: bool, compile_on_calling_thread: bool) -> "_native.PythonCanary":
    try:
        return _native.PythonCanary.load(
            settings.name, json.dumps(settings.document()),
            key=f"routers[{settings.index}]", source="the module's config",
            base_dir=base_dir, cache_dir=cache_dir, cache=cache,
            compile_on_calling_thread=compile_on_calling_thread)
    except _native.RouterLoadError as e:
        message, path = e.args
        raise ConfigError(message, tuple(path)) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot be passed to the runtime as JSON: {e}",
                          ("routers", f"<item {settings.index}>", "canary")) from None


class MigrationKeeper:
    """Applies the decisions of the Python routers' ports."""

    def __init__(self, api: ModuleApi, routers: "_native.RouterSet",
                 live: List[PythonLiveRouter]):
        self._api = api
        self._routers = routers
        self._live = live
        self._applying = False

    def on_trial(self) -> List["_native.PythonCanary"]:
        return [router.canary for router in self._live if router.canary is not None]

    def describe(self) -> List[tuple]:
        """Each port's `stats()`, on trial or decided."""
        return [router.canary.stats() if router.canary is not None else router.decided
                for router in self._live
                if router.canary is not None or router.decided is not None]

    async def apply_decisions(self) -> None:
        for canary in self.on_trial():
            for level, message in canary.take_events():
                logger.log(level, "%s", message)
        if self._applying:
            return
        self._applying = True
        try:
            for router in self._live:
                canary = router.canary
                if canary is None or canary.decision() is None:
                    continue
                try:
                    await self._apply(router, canary)
                except Exception:
                    logger.exception("applying the decision on the port of router `%s` "
                                     "failed; the Python router goes on serving",
                                     router.settings.name)
                    router.canary, router.decided = None, canary.stats()
        finally:
            self._applying = False

    async def _apply(self, router: PythonLiveRouter, canary: "_native.PythonCanary") -> None:
        line = await self._api.defer_to_thread(canary.decision_line)
        if canary.decision() == "promoted":
            try:
                await self._api.defer_to_thread(self._routers.promote_python_canary, canary)
            except _native.RouterLoadError as e:
                message, _ = e.args
                router.canary, router.decided = None, canary.stats()
                logger.warning("%s; but it could not be made the live version: %s; the Python "
                               "router goes on serving", line, message)
                return
            router.promoted = True
            router.canary, router.decided = None, canary.stats()
            logger.info("%s", line)
            for failure in await self._api.defer_to_thread(self._routers.warm_up):
                logger.warning("warming up: %s", failure)
        else:
            router.canary, router.decided = None, canary.stats()
            logger.warning("%s", line)
