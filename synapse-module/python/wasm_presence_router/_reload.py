"""Hot reload of the router components inside Synapse.

Two triggers, both on every Synapse process that runs the module:

- a change of a component file, seen by polling its ``stat`` every
  ``reload.interval`` seconds (the inode, size, modification and change
  times: replacing the file, by ``mv`` or a copy, changes them);
- ``SIGHUP``, the signal Synapse itself reloads its logging configuration
  on: the files are read again whatever their ``stat`` says.

A reload reads each component file and compares its bytes (SHA-256) and
configuration with the running router's: unchanged routers are kept as
they are (warm instances, health, figures), changed ones are compiled,
checked and ``parse-config``ured on a thread (never on the reactor), and the
new version is swapped in atomically. Calls already running finish on the
version they started with. A version that fails to load leaves the running
one serving, and is logged at ERROR as a start-up ``ConfigError`` would be;
the same files are not tried again until they change again (or ``SIGHUP``).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional, Tuple

from synapse.module_api import ModuleApi, run_in_background

from . import _native

logger = logging.getLogger("wasm_presence_router")

# What identifies a version of a file for the poll.
_FileIdentity = Optional[Tuple[int, int, int, int, int]]


def _identity(path: str) -> _FileIdentity:
    try:
        st = os.stat(path)
    except OSError:
        # A missing file is a state too: its return is a change.
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class ReloadSettings:
    """The module's ``reload:`` keys, checked."""

    DEFAULT_INTERVAL_SECONDS = 2.0

    def __init__(self, watch: bool = True, interval: float = DEFAULT_INTERVAL_SECONDS,
                 sighup: bool = True):
        self.watch = watch
        self.interval = interval
        self.sighup = sighup

    @classmethod
    def parse(cls, value: Any, error: Any) -> "ReloadSettings":
        """``error(message, path)`` builds the ``ConfigError`` to raise."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise error("expected a mapping with `watch`, `interval`, `sighup`", ("reload",))
        unknown = sorted(set(value) - {"watch", "interval", "sighup"})
        if unknown:
            raise error(
                f"unknown key `{unknown[0]}`, expected one of `watch`, `interval`, `sighup`",
                ("reload", unknown[0]),
            )
        watch = value.get("watch", True)
        if not isinstance(watch, bool):
            raise error("expected true or false", ("reload", "watch"))
        sighup = value.get("sighup", True)
        if not isinstance(sighup, bool):
            raise error("expected true or false", ("reload", "sighup"))
        interval = value.get("interval", cls.DEFAULT_INTERVAL_SECONDS)
        if (isinstance(interval, bool) or not isinstance(interval, (int, float))
                or not 0.1 <= interval <= 86400):
            raise error("expected a number of seconds from 0.1 to 86400", ("reload", "interval"))
        return cls(watch=watch, interval=float(interval), sighup=sighup)


class ComponentWatcher:
    """Polls the component files and reloads the routers when one changes."""

    def __init__(self, api: ModuleApi, routers: "_native.RouterSet",
                 settings: ReloadSettings):
        self._api = api
        self._routers = routers
        self._settings = settings
        self._seen: Dict[str, _FileIdentity] = self._identities()
        self._reloading = False
        # A trigger while a reload runs: one more reload once it ends.
        self._again = False
        self._force_again = False
        looping = getattr(api, "looping_background_call", None)
        if settings.watch and looping is None:
            logger.warning("this Synapse's ModuleApi has no looping_background_call: "
                           "component files are not watched for changes")
        elif settings.watch:
            # On every process: each loads the components itself.
            looping(
                self.poll,
                settings.interval * 1000,
                desc="wasm_presence_router_watch_components",
                run_on_all_instances=True,
            )
        if settings.sighup:
            self._register_sighup()

    def _paths(self) -> list:
        # The components, and the trusted keys: a key file replaced is a key
        # revoked, and the routers only it signed are taken out.
        # The canaries' components too: one replaced starts a new trial.
        return ([str(component) for _, component, _, _ in self._routers.routers()]
                + [str(canary) for canary in self._routers.canary_files()]
                + [str(key) for key in self._routers.trusted_key_files()])

    def _identities(self) -> Dict[str, _FileIdentity]:
        return {path: _identity(path) for path in self._paths()}

    def _register_sighup(self) -> None:
        # Synapse has no module API for SIGHUP; its own hook takes the
        # homeserver. Without it, the file watch still works.
        try:
            from synapse.app._base import register_sighup

            register_sighup(self._api._hs, self._on_sighup)  # type: ignore[attr-defined]
        except Exception as e:  # pragma: no cover - depends on Synapse's internals
            logger.info("reloading routers on SIGHUP is not available here (%s); "
                        "changed component files are still picked up", e)

    def _on_sighup(self, *args: Any, **kwargs: Any) -> None:
        logger.info("SIGHUP: reading the router components again")
        run_in_background(self.reload, True)

    async def poll(self) -> None:
        now = self._identities()
        if now == self._seen:
            return
        changed = sorted(path for path, identity in now.items()
                         if self._seen.get(path) != identity)
        self._seen = now
        logger.info("component file(s) changed: %s; reloading", ", ".join(changed))
        await self.reload(False)

    async def reload(self, forced: bool) -> None:
        if self._reloading:
            self._again = True
            self._force_again = self._force_again or forced
            return
        self._reloading = True
        try:
            while True:
                await self._reload_once()
                if not self._again:
                    break
                self._again = False
                self._force_again = False
        finally:
            self._reloading = False

    async def _reload_once(self) -> None:
        # The identities read before the load: a file replaced during it is
        # seen as changed by the next poll.
        self._seen = self._identities()
        try:
            reloaded, kept, revoked, canaries_refused = await self._api.defer_to_thread(
                self._routers.reload)
        except _native.RouterLoadError as e:
            message, path = e.args
            where = ".".join(path) if path else "the module's config"
            logger.error(
                "reloading the routers failed; the running version goes on serving: "
                "%s (at %s)", message, where)
            return
        except Exception:
            logger.exception("reloading the routers failed; the running version goes on serving")
            return
        finally:
            _drain_events(self._routers)
        for name, why in revoked:
            logger.error("router `%s` taken out: its signature no longer verifies: %s",
                         name, why)
        for name, why in canaries_refused:
            logger.error("the canary of router `%s` can't be loaded; the router goes on "
                         "without one: %s", name, why)
        if reloaded:
            # Warm as at start-up: the new routers start with one instance.
            for failure in await self._api.defer_to_thread(self._routers.warm_up):
                logger.warning("warming up: %s", failure)
            logger.info("reloaded router(s) %s (kept: %s)",
                        ", ".join(f"`{name}`" for name in reloaded),
                        ", ".join(f"`{name}`" for name in kept) or "none")
        elif not revoked:
            logger.info("no router changed (component bytes and configuration are the same)")


def _drain_events(routers: "_native.RouterSet") -> None:
    for level, message in routers.take_events():
        logger.log(level, "%s", message)
