"""Canaries inside Synapse: applying their decisions, and the operators'
endpoint to see them and decide.

A router's ``canary:`` runs in shadow on the runtime's own thread (never on
the reactor); its trial ends in the runtime, which only records the
decision. Every ``reload.interval`` seconds (and after a reload) this
module looks whether one was decided, and if so applies it on a thread: a
promoted canary is loaded again as its router's live version and swapped
in, a rejected one dropped. The decision is one log line (INFO when
promoted, WARNING when rejected) and the ``wasm_presence_router_canary_*``
metrics.

The endpoint, for a server admin's access token::

    GET  /_synapse/client/wasm_presence_router/canaries
    POST /_synapse/client/wasm_presence_router/canaries
         {"router": "example", "decision": "promote" | "reject"}

Each Synapse process (worker) runs its own trial: the endpoint answers for
the process that serves it.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Tuple

from synapse.module_api import DirectServeJsonResource, ModuleApi

from . import _native

logger = logging.getLogger("wasm_presence_router")

ENDPOINT = "/_synapse/client/wasm_presence_router/canaries"


class CanaryKeeper:
    """Applies the canaries' decisions as they come."""

    def __init__(self, api: ModuleApi, routers: "_native.RouterSet", interval: float,
                 migration: Optional[Any] = None):
        self._api = api
        self._routers = routers
        # The ports of Python routers (_migration.py), if any.
        self._migration = migration
        self._applying = False
        # Canaries are the configuration's, fixed for the life of the
        # process: without any, nothing to look at or serve.
        if not routers.canary_files() and migration is None:
            return
        looping = getattr(api, "looping_background_call", None)
        if looping is not None:
            looping(
                self.apply_decisions,
                interval * 1000,
                desc="wasm_presence_router_canary_decisions",
                run_on_all_instances=True,
            )
        register = getattr(api, "register_web_resource", None)
        if register is not None:
            try:
                register(ENDPOINT, CanaryResource(api, self))
            except Exception as e:  # pragma: no cover - depends on Synapse's internals
                logger.info("the canary endpoint is not available here (%s)", e)

    async def apply_decisions(self) -> None:
        """Applies the decisions made since the last look, if any."""
        if self._migration is not None:
            try:
                await self._migration.apply_decisions()
            except Exception:
                logger.exception("applying the Python routers' ports' decisions failed")
        if self._applying or not self._routers.canary_decided():
            return
        self._applying = True
        try:
            decided = await self._api.defer_to_thread(self._routers.apply_canary_decisions)
        except Exception:
            logger.exception("applying the canaries' decisions failed; the live versions "
                             "go on serving")
            return
        finally:
            self._applying = False
            for level, message in self._routers.take_events():
                logger.log(level, "%s", message)
        if any(decision == "promoted" for _, decision in decided):
            for failure in await self._api.defer_to_thread(self._routers.warm_up):
                logger.warning("warming up: %s", failure)

    def _all(self) -> list:
        canaries = list(self._routers.canaries())
        if self._migration is not None:
            canaries += self._migration.describe()
        return canaries

    def describe(self) -> list:
        return [
            {"router": router, "component": str(component), "calls": calls,
             "agreed": agreed, "diverged": diverged, "failed": failed, "skipped": skipped,
             "decision": decision, "why": why}
            for (router, component, calls, agreed, diverged, failed, skipped, decision, why)
            in self._all()
        ]

    def decide(self, router: str, decision: str) -> bool:
        if self._routers.decide_canary(router, decision):
            return True
        if self._migration is not None:
            for canary in self._migration.on_trial():
                if canary.stats()[0] == router and canary.decision() is None:
                    canary.decide(decision)
                    return True
        return False


class CanaryResource(DirectServeJsonResource):
    """The canaries of this process, for a server admin: see them, and
    promote or reject one now."""

    def __init__(self, api: ModuleApi, keeper: CanaryKeeper):
        super().__init__()
        self._api = api
        self._keeper = keeper

    async def _admin(self, request: Any) -> Optional[Tuple[int, dict]]:
        requester = await self._api.get_user_by_req(request)
        if not await self._api.is_user_admin(requester.user.to_string()):
            return 403, {"errcode": "M_FORBIDDEN", "error": "server admins only"}
        return None

    async def _async_render_GET(self, request: Any) -> Tuple[int, dict]:
        refused = await self._admin(request)
        if refused is not None:
            return refused
        return 200, {"canaries": self._keeper.describe()}

    async def _async_render_POST(self, request: Any) -> Tuple[int, dict]:
        refused = await self._admin(request)
        if refused is not None:
            return refused
        from synapse.http.servlet import parse_json_object_from_request

        body = parse_json_object_from_request(request)
        router, decision = body.get("router"), body.get("decision")
        if not isinstance(router, str) or decision not in ("promote", "reject"):
            return 400, {"errcode": "M_BAD_JSON",
                         "error": 'expected {"router": NAME, "decision": "promote" | "reject"}'}
        if not self._keeper.decide(router, decision):
            return 404, {"errcode": "M_NOT_FOUND",
                         "error": f"router `{router}` has no canary on trial"}
        await self._keeper.apply_decisions()
        return 200, {"canaries": self._keeper.describe()}
