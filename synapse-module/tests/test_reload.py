"""Hot reload inside the module (`_reload.py`), driven by hand: the test
calls the poll Synapse would call every `reload.interval`, so nothing
depends on timing. A changed build is picked up, junk leaves the running
version serving with an error naming the key, an unchanged file changes
nothing."""

import asyncio
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest
from synapse.module_api.errors import ConfigError

from built_guests import guest
from test_module import load, state, users_for_states

CONFIG = {"always_send_to_users": ["@w:x"], "blacklisted_users": ["@bad:x"]}


def replace_file(path: Path, source: str) -> None:
    """Replaces `path` the way an operator should: write beside, rename."""
    beside = path.with_suffix(".new")
    shutil.copyfile(source, beside)
    os.replace(beside, path)


@pytest.fixture
def component(tmp_path: Path) -> Path:
    path = tmp_path / "router.wasm"
    shutil.copyfile(guest("example_router"), path)
    return path


def loaded(component: Path, **reload: Any):
    module, api = load(
        [{"name": "example", "component": str(component), "config": CONFIG}],
        reload=reload or None,
    )
    return module, api


def poll(api) -> None:
    """Runs the module's watch once, as Synapse's looping call would."""
    (f, msec, args, desc, everywhere), = api.looping
    asyncio.run(f(*args))


def routed_to_w(api) -> set:
    routes = users_for_states(api, [state("@bad:x"), state("@good:x")])
    return {s.user_id for s in routes.get("@w:x", set())}


def stats(module) -> Dict[str, Any]:
    return json.loads(module._routers.stats_json())


def test_the_watch_runs_on_every_process_at_the_configured_interval(component: Path) -> None:
    module, api = loaded(component, interval=0.5)
    (_, msec, _, desc, everywhere), = api.looping
    assert (msec, everywhere) == (500, True)
    assert desc == "wasm_presence_router_watch_components"


def test_a_changed_build_is_swapped_in_by_the_next_poll(component: Path, caplog) -> None:
    module, api = loaded(component)
    assert routed_to_w(api) == {"@good:x"}
    poll(api)  # nothing changed: nothing happens
    assert stats(module)["set_reloads"] == {"ok": 0, "failed": 0}

    replace_file(component, guest("example_v2"))
    with caplog.at_level(logging.INFO, logger="wasm_presence_router"):
        poll(api)
    assert "reloaded router(s) `example`" in caplog.text
    # The new build ignores the blacklist.
    assert routed_to_w(api) == {"@good:x", "@bad:x"}
    figures = stats(module)
    assert figures["set_reloads"] == {"ok": 1, "failed": 0}
    assert figures["routers"][0]["reloads"] == 1
    # Its figures went on: two calls before, one after.
    assert figures["routers"][0]["get_users_for_states"]["calls"] == 2


def test_junk_leaves_the_running_version_routing(component: Path, caplog) -> None:
    module, api = loaded(component)
    component.write_bytes(b"\0asm\x0d\0\x01\0 not a component")
    with caplog.at_level(logging.INFO, logger="wasm_presence_router"):
        poll(api)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text
    message = errors[0].getMessage()
    assert "the running version goes on serving" in message
    assert "router `example`" in message and str(component) in message
    assert "routers.<item 0>.component" in message
    assert routed_to_w(api) == {"@good:x"}
    figures = stats(module)
    assert figures["set_reloads"] == {"ok": 0, "failed": 1}
    assert figures["routers"][0]["failed_reloads"] == 1

    # The same junk is not tried again; a good build is.
    caplog.clear()
    poll(api)
    assert "reloading" not in caplog.text
    replace_file(component, guest("example_v2"))
    poll(api)
    assert routed_to_w(api) == {"@good:x", "@bad:x"}


def test_the_same_bytes_written_again_change_nothing(component: Path, caplog) -> None:
    module, api = loaded(component)
    replace_file(component, guest("example_router"))
    with caplog.at_level(logging.INFO, logger="wasm_presence_router"):
        poll(api)
    assert "no router changed" in caplog.text
    assert stats(module)["routers"][0]["reloads"] == 0


def test_watching_can_be_turned_off(component: Path) -> None:
    _, api = loaded(component, watch=False)
    assert api.looping == []


@pytest.mark.parametrize("reload, path, message", [
    ("yes", ("reload",), "expected a mapping"),
    ({"interval": 0}, ("reload", "interval"), "number of seconds"),
    ({"interval": True}, ("reload", "interval"), "number of seconds"),
    ({"watch": "on"}, ("reload", "watch"), "true or false"),
    ({"sighup": 1}, ("reload", "sighup"), "true or false"),
    ({"every": 3}, ("reload", "every"), "unknown key `every`"),
])
def test_bad_reload_keys_are_config_errors_naming_the_key(
        component: Path, reload: Any, path: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load([{"name": "example", "component": str(component), "config": CONFIG}],
             reload=reload)
    assert raised.value.path == path
    assert message in raised.value.msg
