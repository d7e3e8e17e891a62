"""Canaries in a real Synapse: a new version of the example router tried in
shadow on live presence, promoted or rejected by the configuration's
criteria or by a server admin, while the live version serves.

- the example router without its blacklist diverges: rejected at exactly
  one divergent answer more than allowed, those requests recorded for
  ``presence-router diff``, the live version (blacklist and all) serving;
- a rebuild that changes nothing is promoted after N agreeing answers,
  and then serves;
- a canary that spins is rejected at its first call, and the live
  version's answers don't change; a server admin promotes or rejects a
  canary through the module's endpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx

from built_guests import guest
from test_e2e import (
    PRESENCE_ROUTER_CLI,
    ROUTER_CONFIG,
    login,
    register,
    register_and_login,
    running_synapse,
    uid,
    wasm_module,
)
from test_hot_reload import wait_for_log

ENDPOINT = "/_synapse/client/wasm_presence_router/canaries"


def example_with_canary(canary: dict) -> dict:
    module = wasm_module({"name": "example", "component": guest("example_router"),
                          "config": ROUTER_CONFIG, "canary": canary})
    # Decisions are looked for every `reload.interval` seconds.
    module["config"]["reload"] = {"interval": 0.2}
    return module


def decision_of(synapse, needle: str, after: int) -> str:
    """The log line of `example`'s canary's decision, past offset `after`,
    once one holding `needle` is there."""
    wait_for_log(synapse, needle, after)
    return next(text for text in synapse.log_text()[after:].splitlines()
                if "canary of router `example` (" in text)


def rebuilt_example(dir: Path) -> Path:
    """The example router with a custom section added: other bytes, the
    same behaviour."""
    name, payload = b"rebuilt-at", b"2026-12-07"
    body = bytes([len(name)]) + name + payload
    out = dir / "example-rebuilt.wasm"
    out.write_bytes(Path(guest("example_router")).read_bytes() + bytes([0, len(body)]) + body)
    return out


def register_admin(http: httpx.Client, localpart: str) -> str:
    """A server admin; their access token."""
    register(http, localpart, admin=True)
    return login(http, localpart).token


def test_a_diverging_canary_is_rejected_with_exact_counts_and_the_live_version_serves(
        tmp_path: Path) -> None:
    recorded = tmp_path / "divergent.jsonl"
    module = example_with_canary({
        "config": {"always_send_to_users": ROUTER_CONFIG["always_send_to_users"]},
        "promote_after": 1000,
        "max_divergent": 1,
        "record_divergent": str(recorded),
    })
    with running_synapse("canary-diverges", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        watcher.sync(0)
        mark = len(synapse.log_text())
        # Each of hidden's updates is routed by the canary (no blacklist)
        # and not by the live version: a divergent answer each.
        hidden.set_presence("online", "one")
        alice.set_presence("online")
        watcher.wait_to_see(alice.user_id)
        hidden.set_presence("unavailable", "two")
        decision = decision_of(synapse, ") rejected after ", mark)
        assert "WARNING" in decision, decision
        assert ": 2 divergent answer(s), more than the 1 allowed (" in decision, decision
        assert "; the live version goes on serving" in decision, decision
        assert f"2 divergent request(s) recorded in {recorded}" in decision, decision
        # The live version serves, its blacklist holding: hidden's updates
        # never reached the watcher, before or after the decision.
        hidden.set_presence("online", "three")
        alice.set_presence("unavailable")
        watcher.wait_to_see(alice.user_id, "unavailable")
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen
        assert "Traceback" not in synapse.log_text()
    # The recorded requests: hidden's two updates, which `diff` replays and
    # explains with the two configurations.
    lines = [json.loads(text) for text in recorded.read_text().splitlines()]
    assert len(lines) == 2, lines
    for request in lines:
        states = request["get_users_for_states"]
        assert [state["user_id"] for state in states] == [uid("hidden")], request
    old = tmp_path / "old.yaml"
    old.write_text(json.dumps({"routers": [{"name": "example",
                                            "component": guest("example_router"),
                                            "config": ROUTER_CONFIG}]}))
    new = tmp_path / "new.yaml"
    new.write_text(json.dumps({"routers": [{
        "name": "example", "component": guest("example_router"),
        "config": {"always_send_to_users": ROUTER_CONFIG["always_send_to_users"]}}]}))
    diff = subprocess.run([str(PRESENCE_ROUTER_CLI), "diff", "--config", str(old),
                           "--with", str(new)], input=recorded.read_text(),
                          capture_output=True, text=True, timeout=300)
    assert diff.returncode == 1, diff.stderr
    assert len(diff.stdout.splitlines()) == 2, diff.stdout


def test_a_rebuild_is_promoted_after_n_agreeing_answers_and_then_serves(
        tmp_path: Path) -> None:
    rebuilt = rebuilt_example(tmp_path)
    module = example_with_canary({"component": str(rebuilt), "promote_after": 5})
    with running_synapse("canary-promoted", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        admin = register_admin(http, "admin")
        mark = len(synapse.log_text())
        states = ["online", "unavailable"]
        for i in range(6):
            alice.set_presence(states[i % 2])
            watcher.sync(0)
        decision = decision_of(synapse, ") promoted after ", mark)
        assert f"canary of router `example` ({rebuilt}) promoted after " in decision, decision
        assert ": 5 agreeing, 0 divergent, 0 failed" in decision, decision
        assert decision.endswith("; it is the live version now"), decision
        # The rebuild serves: alice's updates reach the watcher, hidden's
        # don't.
        hidden.set_presence("online")
        alice.set_presence("online", "after the promotion")
        watcher.wait_to_see(alice.user_id)
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen
        r = http.get(ENDPOINT, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        [canary] = r.json()["canaries"]
        assert (canary["decision"], canary["agreed"], canary["diverged"]) == ("promoted", 5, 0)
        assert canary["component"] == str(rebuilt)


def test_a_spinning_canary_is_rejected_and_an_admin_decides_a_canary_on_trial(
        tmp_path: Path) -> None:
    rebuilt = rebuilt_example(tmp_path)
    # Its interest answers (nobody) differ from the live version's ("all
    # users" for the watcher): tolerated here, so that its spin decides.
    spinning = example_with_canary({"component": guest("hostile_spin"), "config": {},
                                    "promote_after": 1000, "max_divergent": 1000})
    spinning["config"]["routers"].append({
        "name": "second", "component": guest("example_router"), "config": ROUTER_CONFIG,
        "canary": {"component": str(rebuilt), "promote_after": 100000}})
    with running_synapse("canary-spins", [spinning]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        admin = register_admin(http, "admin")
        mark = len(synapse.log_text())
        hidden.set_presence("online")
        alice.set_presence("online")
        watcher.wait_to_see(alice.user_id)
        decision = decision_of(synapse, "canary of router `example` (", mark)
        assert ") rejected after " in decision, decision
        assert ": 1 failed call(s), more than the 0 allowed" in decision, decision
        # The live versions' answers didn't change: nothing skipped, and
        # hidden's update held back.
        assert "skipped for this call" not in synapse.log_text(), synapse.log_tail()
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        # Only a server admin may decide.
        forbidden = http.post(ENDPOINT, json={"router": "second", "decision": "promote"},
                              headers={"Authorization": f"Bearer {alice.token}"})
        assert forbidden.status_code == 403, forbidden.text
        bad = http.post(ENDPOINT, json={"router": "second", "decision": "maybe"},
                        headers={"Authorization": f"Bearer {admin}"})
        assert bad.status_code == 400, bad.text
        missing = http.post(ENDPOINT, json={"router": "example", "decision": "reject"},
                            headers={"Authorization": f"Bearer {admin}"})
        assert missing.status_code == 404, missing.text
        mark = len(synapse.log_text())
        promoted = http.post(ENDPOINT, json={"router": "second", "decision": "promote"},
                             headers={"Authorization": f"Bearer {admin}"})
        assert promoted.status_code == 200, promoted.text
        states = {c["router"]: c["decision"] for c in promoted.json()["canaries"]}
        assert states == {"example": "rejected", "second": "promoted"}, promoted.json()
        wait_for_log(synapse, "the operator's decision; it is the live version now", mark)
        alice.set_presence("unavailable")
        watcher.wait_to_see(alice.user_id, "unavailable")


def python_live(canary: dict) -> dict:
    """The module with the docs' Python example router as the live version
    of `example`, and `canary` (its wasm port) beside it."""
    module = wasm_module({
        "name": "example",
        "python": {"module": "example_presence_router.ExamplePresenceRouter",
                   "config": ROUTER_CONFIG},
        "canary": canary,
    })
    module["config"]["reload"] = {"interval": 0.2}
    return module


def test_a_python_router_serves_until_its_wasm_port_agreed_with_it_then_the_port_serves(
        tmp_path: Path) -> None:
    module = python_live({"component": guest("example_router"), "config": ROUTER_CONFIG,
                          "promote_after": 5})
    with running_synapse("migration-promoted", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        admin = register_admin(http, "admin")
        mark = len(synapse.log_text())
        states = ["online", "unavailable"]
        for i in range(6):
            hidden.set_presence(states[i % 2])
            alice.set_presence(states[i % 2])
            watcher.sync(0)
        decision = decision_of(synapse, ") promoted after ", mark)
        assert ": 5 agreeing, 0 divergent, 0 failed" in decision, decision
        r = http.get(ENDPOINT, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
        [canary] = r.json()["canaries"]
        assert (canary["router"], canary["decision"]) == ("example", "promoted"), canary
        # The port serves now, as the Python router did: alice reaches the
        # watcher, hidden doesn't.
        hidden.set_presence("online", "after the port took over")
        alice.set_presence("online", "after the port took over")
        watcher.wait_to_see(alice.user_id)
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen
        assert "Traceback" not in synapse.log_text()


def test_a_port_that_diverges_from_the_python_router_is_rejected_and_python_serves(
        tmp_path: Path) -> None:
    recorded = tmp_path / "divergent.jsonl"
    module = python_live({"component": guest("example_v2"), "config": ROUTER_CONFIG,
                          "promote_after": 1000, "record_divergent": str(recorded)})
    with running_synapse("migration-rejected", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        watcher.sync(0)
        mark = len(synapse.log_text())
        hidden.set_presence("online")
        alice.set_presence("online")
        watcher.wait_to_see(alice.user_id)
        decision = decision_of(synapse, ") rejected after ", mark)
        assert ": 1 divergent answer(s), more than the 0 allowed" in decision, decision
        assert "1 divergent request(s) recorded in" in decision, decision
        hidden.set_presence("unavailable")
        alice.set_presence("unavailable")
        watcher.wait_to_see(alice.user_id, "unavailable")
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen
    [line] = recorded.read_text().splitlines()
    assert uid("hidden") in [state["user_id"]
                             for state in json.loads(line)["get_users_for_states"]], line
