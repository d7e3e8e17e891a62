"""The reactor's side of calls finished off it (the native side is
``src/jobs.rs``): handing a job to the module's worker threads, waiting for
it without blocking the reactor, and giving up on it when Synapse does.

A job is finished on the module's own threads, which never take the GIL,
if the reactor can watch their socket: a reader (``IReadDescriptor``) on it
fires the waiting Deferreds. Otherwise (the memory reactor of Synapse's
unit-test harness watches no descriptor) Synapse's thread pool finishes it
with the GIL released.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

from synapse.module_api import ModuleApi, make_deferred_yieldable
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFDSet

from . import _native

Answer = Union["_native.StatesAnswer", "_native.InterestAnswer"]


class ReactorJobs:
    """Finishes the jobs of one router set, chosen at the first job (once
    the reactor runs)."""

    def __init__(self, api: ModuleApi, routers: "_native.RouterSet"):
        self._api = api
        self._routers = routers
        self._watcher: Optional[_Watcher] = None

    async def finish(self, pending: "_native.Pending") -> Answer:
        job = pending.job
        try:
            if self._watcher is None:
                self._watcher = _Watcher(self._routers, _watchable_reactor(self._api))
            waiting = self._watcher.submit(job) if self._watcher.watched else None
        except BaseException:
            self._routers.drop_job(job)
            raise
        if waiting is not None:
            return await make_deferred_yieldable(waiting)
        return await self._api.defer_to_thread(self._routers.run_job, job)


def _watchable_reactor(api: ModuleApi) -> Optional[Any]:
    """The homeserver's reactor, if it is the process's real one (not the
    memory reactor of Synapse's unit-test harness, which watches no
    descriptor). ModuleApi has no public accessor for it: without one,
    Synapse's thread pool finishes the jobs instead."""
    from twisted.internet import reactor as global_reactor

    get_reactor = getattr(getattr(api, "_hs", None), "get_reactor", None)
    reactor = get_reactor() if callable(get_reactor) else None
    if reactor is not global_reactor or not IReactorFDSet.providedBy(reactor):
        return None
    return reactor


class _Watcher:
    """A reader on the socket the worker threads write to when a job is
    done, and the Deferreds waiting for those jobs."""

    def __init__(self, routers: "_native.RouterSet", reactor: Optional[Any]):
        self._routers = routers
        self._waiting: Dict[int, "Deferred[Any]"] = {}
        self.watched = reactor is not None
        if reactor is not None:
            self._fileno = routers.offload_fileno()
            reactor.addReader(self)

    def submit(self, job: int) -> "Deferred[Any]":
        def cancel(_: "Deferred[Any]") -> None:
            # Synapse gave up on the request: the job's parts not yet
            # running are dropped.
            self._waiting.pop(job, None)
            self._routers.cancel_job(job)

        waiting: "Deferred[Any]" = Deferred(canceller=cancel)
        self._waiting[job] = waiting
        try:
            self._routers.submit(job)
        except BaseException:
            self._waiting.pop(job, None)
            raise
        return waiting

    # IReadDescriptor
    def fileno(self) -> int:
        return self._fileno

    def doRead(self) -> None:
        for job, answer in self._routers.take_finished():
            waiting = self._waiting.pop(job, None)
            # A cancelled request's Deferred ignores its late answer.
            if waiting is None:
                continue
            if isinstance(answer, BaseException):
                waiting.errback(answer)
            else:
                waiting.callback(answer)

    def connectionLost(self, reason: Any) -> None:
        pass

    def logPrefix(self) -> str:
        return "wasm_presence_router"
