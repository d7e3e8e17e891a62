"""Synapse presence routers as sandboxed WebAssembly components.

A Synapse module that loads presence routers compiled to WebAssembly
components (the ``matrix:presence-router`` WIT world) and calls them under
fuel, memory and time limits. In ``homeserver.yaml``::

    modules:
      - module: wasm_presence_router.WasmPresenceRouter
        config:
          routers:
            - component: /etc/synapse/routers/example.wasm
              config: { always_send_to_users: ["@alice:example.com"] }

or in the legacy ``presence: presence_router:`` slot with the same
``module`` and ``config``. The operator's guide is ``docs/synapse.md``.

The routers are loaded, and their configurations checked, when Synapse reads
its configuration (``parse_config``), so a bad one stops Synapse at start
with a ``ConfigError`` naming the key.

A call runs first on the reactor, each router within a slice (200,000 units
of fuel, 5 ms of waits and 2,048 answer entries, ``Slice::REACTOR`` in the
runtime): a one-state call costs about what the Python router it replaces
costs, with no thread hop. The routers that need more (a big batch, a slow
or hostile router) are finished off the reactor by the module's own
threads, each router in its own queue, which never take the GIL, and the
reactor is woken through a socket it watches (``_jobs.py``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Awaitable, Dict, Iterable, List, Optional, Set, Tuple, Union

from synapse.logging.context import current_context
from synapse.module_api import PRESENCE_ALL_USERS, ModuleApi, UserPresenceState
from synapse.module_api.errors import ConfigError
from twisted.internet import defer
from twisted.internet.defer import CancelledError

from . import _metrics, _native
from ._jobs import ReactorJobs
from ._record import RecordSettings
from ._canary import CanaryKeeper
from ._migration import MigrationKeeper, PythonLiveRouter, PythonRouterSettings
from ._migration import load_canary as load_python_canary
from ._reload import ComponentWatcher, ReloadSettings

#: The release's version, the same as the CLI's and the crates'.
__version__: str = _native.__version__

__all__ = ["WasmPresenceRouter", "WasmPresenceRouterConfig", "__version__"]

logger = logging.getLogger(__name__)

_ROUTING_FAILED = "routing a batch of %d presence states failed"
_INTEREST_FAILED = "asking whose presence %s is interested in failed"

# The module's own keys beside the runtime's `routers:`.
_MODULE_KEYS = ("cache_dir", "cache", "reload", "record")


class WasmPresenceRouterConfig:
    """The module's checked configuration, with its routers already loaded
    (by ``parse_config``, so that a router that can't load stops Synapse
    while it reads its configuration).

    Its paths (``component``, ``cache_dir``) are absolute: a relative one
    was resolved once, by ``parse_config``, against the working directory
    Synapse had then. A daemonizing Synapse changes directory to ``/``
    before the routers are loaded again in ``__init__``, which must load the
    same files."""

    def __init__(self, routers_json: str, cache_dir: Optional[str], cache: bool,
                 base_dir: str, record: Optional[RecordSettings] = None,
                 python_routers: Optional[List[PythonRouterSettings]] = None):
        self.routers_json = routers_json
        # Python routers run as the live versions of their wasm ports
        # (_migration.py), and the ports, loaded with the routers.
        self.python_routers = python_routers or []
        self.python_canaries: List[Any] = []
        self.cache_dir = cache_dir
        self.cache = cache
        self.base_dir = base_dir
        self.loaded_by_pid = os.getpid()
        # Recording of the routed calls (_record.py), started with each load.
        self.record = record
        # How new builds of the components are picked up (_reload.py).
        self.reload = ReloadSettings()
        self.routers = self.load(compile_on_calling_thread=False)

    def _original_path(self, path: Tuple[str, ...]) -> Tuple[str, ...]:
        """A path into the wasm routers' list as a path into the module's
        ``routers:``, which also holds the Python routers."""
        if not self.python_routers or len(path) < 2 or path[0] != "routers":
            return path
        python = sorted(settings.index for settings in self.python_routers)
        item = path[1]
        if not (item.startswith("<item ") and item.endswith(">")):
            return path
        try:
            index = int(item[len("<item "):-1])
        except ValueError:
            return path
        for taken in python:
            if taken <= index:
                index += 1
        return ("routers", f"<item {index}>", *path[2:])

    def __deepcopy__(self, memo: Dict[int, Any]) -> "WasmPresenceRouterConfig":
        # Synapse's test harness deep-copies module configurations. The
        # loaded routers are immutable and shared by design (a router set
        # serves any number of concurrent calls), and can't be copied: a
        # copy shares them.
        copied = WasmPresenceRouterConfig.__new__(WasmPresenceRouterConfig)
        copied.__dict__.update(self.__dict__)
        return copied

    def __copy__(self) -> "WasmPresenceRouterConfig":
        return self.__deepcopy__({})

    def load(self, compile_on_calling_thread: bool) -> "_native.RouterSet":
        try:
            routers = _native.RouterSet.load(
                self.routers_json,
                source="the module's config",
                base_dir=self.base_dir,
                cache_dir=self.cache_dir,
                cache=self.cache,
                compile_on_calling_thread=compile_on_calling_thread,
            )
        except _native.RouterLoadError as e:
            message, path = e.args
            raise ConfigError(message, self._original_path(tuple(path))) from None
        if self.record is not None:
            self.record.attach(routers)
        self.python_canaries = [
            load_python_canary(settings, self.base_dir, self.cache_dir, self.cache,
                               compile_on_calling_thread)
            for settings in self.python_routers
        ]
        # What the routers logged while starting stays queued: Synapse reads
        # its configuration before it sets up logging, and the module's
        # `__init__` logs it.
        return routers


class WasmPresenceRouter:
    """The Synapse module: runs the configured wasm routers as one presence
    router (their answers merged the way Synapse merges its routers')."""

    # A user who was answered "all users" must get an entry in the
    # `get_users_for_states` answer of their `/sync`, which Synapse indexes
    # by them: in that same request, it asks `get_interested_users`, then
    # routes everyone's presence and takes the entry of that user. So the
    # entry is added to the answers of that request alone (its logging
    # context), not to every batch: its cost is one entry for the request
    # that needs it. At most ALL_USERS_REQUESTS requests are remembered,
    # each with its ALL_USERS_PER_REQUEST latest users (Synapse's
    # application-service path asks for one user after another in one
    # context, routing right after each).
    ALL_USERS_REQUESTS = 4096
    ALL_USERS_PER_REQUEST = 64

    def __init__(self, config: WasmPresenceRouterConfig,
                 api: Optional[ModuleApi] = None, *,
                 module_api: Optional[ModuleApi] = None):
        # Synapse's module docs and its test harness pass the API as `api`
        # (positionally or by keyword); the legacy `presence.presence_router`
        # slot passes it as `module_api=`.
        if (api is None) == (module_api is None):
            raise TypeError("WasmPresenceRouter needs the ModuleApi, as `api` or `module_api`")
        module_api = api if api is not None else module_api
        assert module_api is not None
        self._api = module_api
        if config.loaded_by_pid != os.getpid():
            # Synapse forked (it daemonizes after reading its config): the
            # routers' compiler threads and time-budget watchdog stayed in
            # the parent. Load again here, compiling on this thread only.
            config.routers = config.load(compile_on_calling_thread=True)
            config.loaded_by_pid = os.getpid()
        self._routers = config.routers
        for name, component, source, millis in self._routers.routers():
            logger.info(
                "router `%s` loaded from %s (%s, %.1f ms)", name, component, source, millis
            )
        for failure in self._routers.warm_up():
            logger.warning("warming up: %s", failure)
        _log_events(self._routers)
        # request (logging context) -> the users answered "all users" in
        # it (latest last), oldest request first.
        self._all_users_by_request: "OrderedDict[Any, OrderedDict[str, None]]" = OrderedDict()
        # Finishes the calls the reactor's slices left unfinished.
        self._jobs = ReactorJobs(module_api, self._routers)
        # Synapse lets only a presence writer call
        # send_local_online_presence_to. Every process routes the same
        # batches (the writer as it writes them, the others as they arrive
        # by replication), so the writer's routers ask for the same sends: a
        # process that is not a writer drops its routers' asks, counts them,
        # and says why once. None: Synapse doesn't say (not a real
        # homeserver); send, and let Synapse refuse.
        self._presence_writing = _presence_writing(module_api)
        # Sends asked for by the routers and not made here because this
        # process doesn't write presence: one per routed call that asked.
        self.sends_not_sent = 0
        self._said_why_not_sent = False

        # Registered here, for both config forms. The callbacks are not named
        # `get_users_for_states`/`get_interested_users` on purpose: the legacy
        # slot registers methods of those names itself, which would make
        # Synapse call every router twice.
        module_api.register_presence_router_callbacks(
            get_users_for_states=self._get_users_for_states,
            get_interested_users=self._get_interested_users,
        )
        # New builds of the components replace the running ones without a
        # restart (_reload.py).
        self._watcher = ComponentWatcher(module_api, self._routers, config.reload)
        # Python routers serving while their wasm ports are tried
        # (_migration.py): Synapse calls them as it called them before.
        self._python_routers = [
            PythonLiveRouter(settings, canary, module_api)
            for settings, canary in zip(config.python_routers, config.python_canaries)
        ]
        migration = (MigrationKeeper(module_api, self._routers, self._python_routers)
                     if self._python_routers else None)
        # Canaries' decisions applied as they come, and the operators'
        # endpoint (_canary.py).
        self._canaries = CanaryKeeper(module_api, self._routers, config.reload.interval,
                                      migration)
        # Its routers' figures on Synapse's /_synapse/metrics (_metrics.py).
        _metrics.register_module(self, getattr(module_api, "server_name", ""))

    @staticmethod
    def parse_config(config: Dict[str, Any]) -> WasmPresenceRouterConfig:
        if not isinstance(config, dict):
            raise ConfigError("expected a mapping with a `routers` list", ())
        # Relative paths are resolved here, once: `__init__` may run after
        # Synapse has changed its working directory.
        base_dir = os.getcwd()
        routers, python_routers = _python_routers(
            {k: v for k, v in config.items() if k not in _MODULE_KEYS})
        routers = _with_absolute_components(routers, base_dir)
        cache_dir = config.get("cache_dir")
        if cache_dir is not None and not isinstance(cache_dir, str):
            raise ConfigError("expected the path of a directory", ("cache_dir",))
        if cache_dir is not None:
            cache_dir = os.path.join(base_dir, cache_dir)
        cache = config.get("cache", True)
        if not isinstance(cache, bool):
            raise ConfigError("expected true or false", ("cache",))
        if not cache and cache_dir is not None:
            raise ConfigError("`cache: false` and a `cache_dir` contradict", ("cache_dir",))
        try:
            routers_json = json.dumps(routers)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"cannot be passed to the routers as JSON: {e}", ()) from None
        reload = ReloadSettings.parse(config.get("reload"), ConfigError)
        record = RecordSettings.parse(config.get("record"), base_dir)
        parsed = WasmPresenceRouterConfig(routers_json, cache_dir, cache, base_dir,
                                          record=record, python_routers=python_routers)
        parsed.reload = reload
        return parsed

    # The callbacks are plain functions, not coroutines: a call answered on
    # the reactor (nearly every call) returns an awaitable already done
    # (`_native.Done`), which Synapse awaits as it is; a coroutine it would
    # wrap in Deferreds, several times the cost of the call. A call finished
    # off the reactor returns the Deferred Synapse would have made of its
    # coroutine (and protects from cancellation as any module's), started
    # at once: the job the reactor's try left is handed on now, never left
    # to a coroutine its caller might not start.

    def _get_users_for_states(
        self, state_updates: Iterable[UserPresenceState]
    ) -> Awaitable[Dict[str, Set[UserPresenceState]]]:
        states = state_updates if state_updates.__class__ is list else list(state_updates)
        try:
            answer = self._routers.route_states(states)
        except Exception:
            logger.exception(_ROUTING_FAILED, len(states))
            answer = _native.Done({})
        if answer.__class__ is not _native.Done:
            if answer.__class__ is _native.Pending:
                return defer.ensureDeferred(self._routes_later(answer, len(states)))
            answer = _native.Done(self._answered(answer, _ROUTING_FAILED, len(states)).routes)
        if self._all_users_by_request:
            self._add_all_users_entries(answer.value)
        return answer

    def _get_interested_users(self, user_id: str) -> Awaitable[Union[Set[str], str]]:
        try:
            answer = self._routers.route_interest(user_id)
        except Exception:
            logger.exception(_INTEREST_FAILED, user_id)
            return _native.Done(set())
        if answer.__class__ is _native.Done:
            return answer
        if answer.__class__ is _native.Pending:
            return defer.ensureDeferred(self._interest_later(answer, user_id))
        return _native.Done(
            self._interest(self._answered(answer, _INTEREST_FAILED, user_id), user_id))

    async def _routes_later(self, pending: "_native.Pending",
                            size: int) -> Dict[str, Set[UserPresenceState]]:
        answer = await self._finish_job(pending, _ROUTING_FAILED, size)
        routes: Dict[str, Set[UserPresenceState]] = answer.routes if answer is not None else {}
        if self._all_users_by_request:
            self._add_all_users_entries(routes)
        return routes

    async def _interest_later(self, pending: "_native.Pending",
                              user_id: str) -> Union[Set[str], str]:
        return self._interest(await self._finish_job(pending, _INTEREST_FAILED, user_id),
                              user_id)

    def _interest(self, answer: Optional[Any], user_id: str) -> Union[Set[str], str]:
        if answer is None:
            return set()
        if answer.all_users:
            self._remember_all_users(user_id)
            return PRESENCE_ALL_USERS
        return answer.users

    def _add_all_users_entries(self, routes: Dict[str, Set[UserPresenceState]]) -> None:
        """The entries this request's "all users" users need (see
        ALL_USERS_REQUESTS)."""
        receivers = self._all_users_by_request.get(_current_request())
        if receivers:
            # Synapse copies what it is given and never changes it: one
            # empty set serves every entry.
            empty: Set[UserPresenceState] = set()
            for user_id in receivers:
                routes.setdefault(user_id, empty)

    async def _finish_job(self, pending: "_native.Pending", failed: str,
                          *failed_args: Any) -> Optional[Any]:
        """A call the reactor's slices left unfinished, finished off it.
        None if it failed, which is logged with `failed % failed_args` and
        not raised to Synapse: Synapse would skip this module, and its
        `ALL_USERS` path would then miss the entries
        `_get_users_for_states` adds."""
        try:
            answer = await self._jobs.finish(pending)
        except CancelledError:
            raise  # Synapse gave up on the request: not a router's failure.
        except Exception:
            logger.exception(failed, *failed_args)
            return None
        return self._answered(answer, failed, *failed_args)

    def _answered(self, answer: Any, failed: str, *failed_args: Any) -> Any:
        """Logs what a call reported and schedules its sends."""
        try:
            if answer.events:
                _log_call_events(answer.events)
            if answer.sends:
                self._send_presence_later(answer.sends)
        except Exception:
            # The answer stands: only what the call reported or asked to
            # send is lost.
            logger.exception(failed, *failed_args)
        return answer

    def _remember_all_users(self, user_id: str) -> None:
        """`user_id` was answered "all users" in this request: its routing
        answers carry an entry for them."""
        by_request = self._all_users_by_request
        request = _current_request()
        receivers = by_request.get(request)
        if receivers is None:
            receivers = by_request[request] = OrderedDict()
            while len(by_request) > self.ALL_USERS_REQUESTS:
                by_request.popitem(last=False)
        else:
            by_request.move_to_end(request)
        receivers[user_id] = None
        receivers.move_to_end(user_id)
        while len(receivers) > self.ALL_USERS_PER_REQUEST:
            receivers.popitem(last=False)

    def _send_presence_later(self, users: List[str]) -> None:
        """Acts on the routers' `send-local-online-presence-to`, on the
        reactor, once the call that asked has returned to Synapse; on a
        process that doesn't write presence, counts it instead (the writer
        routed the same batch and sends)."""
        writing = self._presence_writing
        if writing is not None and not writing.here:
            self.sends_not_sent += 1
            if self._said_why_not_sent:
                logger.debug(
                    "the routers asked for presence to be sent to %d user(s); not sent from "
                    "`%s` (%d such asks so far)",
                    len(users), writing.instance, self.sends_not_sent,
                )
            else:
                self._said_why_not_sent = True
                logger.info(
                    "the routers asked for presence to be sent to %d user(s); not sent from "
                    "`%s`: only the presence writer (%s) sends, and it calls the routers on "
                    "the same batches (further asks on this process are logged at DEBUG)",
                    len(users), writing.instance, writing.writers_text(),
                )
            return
        self._api.delayed_background_call(
            0,
            self._send_presence,
            users,
            desc="wasm_presence_router_send_local_online_presence_to",
        )

    async def _send_presence(self, users: List[str]) -> None:
        try:
            await self._api.send_local_online_presence_to(users)
        except Exception:
            logger.exception("send_local_online_presence_to(%s) asked by a router failed", users)
            return
        logger.info(
            "sent online presence to %d user(s), as the routers asked "
            "(send_local_online_presence_to)", len(users),
        )


class _PresenceWriting:
    """Which processes write presence, and whether this one does."""

    def __init__(self, instance: str, writers: List[str]):
        self.instance = instance
        self.writers = writers
        self.here = instance in writers

    def writers_text(self) -> str:
        return ", ".join(f"`{w}`" for w in self.writers) or "none configured"


def _presence_writing(api: ModuleApi) -> Optional[_PresenceWriting]:
    """This process's instance name and the presence writers, as Synapse's
    own `send_local_online_presence_to` checks them
    (`hs.config.worker.writers.presence`); None where the API doesn't carry
    them (ModuleApi has no public accessor for either)."""
    hs = getattr(api, "_hs", None)
    try:
        instance = hs.get_instance_name()  # type: ignore[union-attr]
        writers = list(hs.config.worker.writers.presence)  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        return None
    if not isinstance(instance, str) or not all(isinstance(w, str) for w in writers):
        return None
    return _PresenceWriting(instance, writers)


def _current_request() -> Any:
    """The request being served (Synapse's logging context for it), or one
    shared stand-in outside any request."""
    return current_context()


def _python_routers(routers: Dict[str, Any]
                    ) -> Tuple[Dict[str, Any], List[PythonRouterSettings]]:
    """``routers`` without its Python routers (entries with ``python:``),
    and those, checked; their names may not be the wasm routers'."""
    entries = routers.get("routers")
    if not isinstance(entries, list):
        return routers, []
    python = [PythonRouterSettings.parse(i, entry) for i, entry in enumerate(entries)
              if isinstance(entry, dict) and "python" in entry]
    if not python:
        return routers, []
    for settings in python:
        settings.trusted_keys = routers.get("trusted_keys")
        settings.require_signatures = routers.get("require_signatures")
    wasm = [entry for entry in entries if not (isinstance(entry, dict) and "python" in entry)]
    names = set()
    for entry in wasm:
        if isinstance(entry, dict):
            name = entry.get("name")
            if name is None and isinstance(entry.get("component"), str):
                name = os.path.splitext(os.path.basename(entry["component"]))[0]
            names.add(name)
    seen = set()
    for settings in python:
        if settings.name in names or settings.name in seen:
            raise ConfigError(f"the name `{settings.name}` is already used: give each router "
                              "a unique `name`", ("routers", f"<item {settings.index}>", "name"))
        seen.add(settings.name)
    return {**routers, "routers": wasm}, python


def _with_absolute_components(routers: Dict[str, Any], base_dir: str) -> Dict[str, Any]:
    """``routers`` with every relative ``component`` path joined to
    ``base_dir``, as the runtime would join it (no normalisation: `..` and
    symbolic links mean what they meant). What is not a list of mappings
    with a string ``component`` is left for the runtime to refuse. The
    caller's configuration is not changed."""
    entries = routers.get("routers")
    if not isinstance(entries, list):
        return routers
    resolved = []
    for entry in entries:
        component = entry.get("component") if isinstance(entry, dict) else None
        if isinstance(component, str) and component and not os.path.isabs(component):
            entry = {**entry, "component": os.path.join(base_dir, component)}
        resolved.append(entry)
    return {**routers, "routers": resolved}


def _log_events(routers: "_native.RouterSet") -> None:
    """Hands what the runtime reported outside any call (while loading, its
    own warnings) to Python's logging, under this module's logger."""
    _log_call_events(routers.take_events())


def _log_call_events(events: List[Tuple[int, str]]) -> None:
    """Logs what one call reported (guest log lines, skipped routers), on
    the reactor, in the log context of the request that made the call; and
    what the runtime reported since the last call, outside any (a cache it
    can't use, say)."""
    for level, message in events:
        logger.log(level, "%s", message)
