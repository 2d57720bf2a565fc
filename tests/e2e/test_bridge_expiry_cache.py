"""`is_user_expired` answers that hold for a while, through a real Synapse: glia's
`account_expiry` says a new user's "not expired" holds until their expiry date
(`default_validity_ms` after registering), the bridge reuses it for every authenticated
request until then, and asks glia again the first time after; a reload of glia's config
that moves the date ends the reuse.

glia's decisions are counted on its `/metrics`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from glia_synapse.reply_cache import FRESH_S
from harness import GLIA_TOKEN, Glia, Synapse, bridge_module, free_port, http_request, mxid

#: How long a new user stays valid: long enough for the requests before it, short for the test.
VALIDITY_MS = 4000


@contextmanager
def expiry_behind_synapse(
    glia_bin: Path, tmp_path_factory: pytest.TempPathFactory, expiry_config: dict[str, Any]
) -> Iterator[tuple[Glia, Synapse, dict[str, Any]]]:
    """glia running `account_expiry` with `expiry_config`, a Synapse bridged to it, and
    glia's config (to rewrite for a reload)."""
    port = free_port()
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "modules": [{"module": "account_expiry", "config": expiry_config}],
    }
    glia = Glia.start(glia_bin, tmp_path_factory.mktemp("glia"), config, port)
    try:
        synapse = Synapse.start(tmp_path_factory.mktemp("synapse"), [bridge_module(glia.url)])
    except RuntimeError as e:
        glia.stop()
        pytest.fail(str(e), pytrace=False)
    try:
        yield glia, synapse, config
    finally:
        synapse.stop()
        glia.stop()


@pytest.fixture(scope="module")
def servers(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Glia, Synapse]]:
    with expiry_behind_synapse(glia_bin, tmp_path_factory, {"default_validity_ms": VALIDITY_MS}) as (glia, synapse, _):
        yield glia, synapse


def decisions(glia: Glia) -> float:
    """`is_user_expired` dispatches glia has made."""
    status, _, raw = http_request("GET", glia.url + "/metrics")
    assert status == 200, raw
    pattern = r'glia_decisions_total\{callback="is_user_expired",result="\w+"\} (\S+)'
    return sum(float(v) for v in re.findall(pattern, raw.decode()))


def test_a_lasting_answer_is_reused_until_it_lapses_then_asked_again(servers: tuple[Glia, Synapse]) -> None:
    glia, synapse = servers
    # on_user_registration arrives while registering: valid for VALIDITY_MS from then.
    asked_at = time.time()
    user = synapse.register("fleeting")
    registered_by = time.time()
    expires_at = asked_at + VALIDITY_MS / 1000  # at the earliest
    before = decisions(glia)
    for _ in range(10):
        reply = user.whoami()
        assert reply.status == 200, reply.body
    assert time.time() < expires_at, "the machine was too slow for this test's 4 s window"
    assert decisions(glia) - before == 1  # ten authenticated requests, one question to glia

    time.sleep(max(0.0, registered_by + VALIDITY_MS / 1000 - time.time()) + 0.1)  # expired by now
    refused = user.whoami()
    assert (refused.status, refused.body.get("errcode")) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT")
    assert decisions(glia) - before == 2  # asked again once the answer lapsed


#: 2100-01-01, in milliseconds since the epoch.
FAR_FUTURE_MS = 4_102_444_800_000


def reload_with_expiry(glia: Glia, config: dict[str, Any], expiry: dict[str, int]) -> None:
    """Rewrites glia's config with `account_expiry`'s table set to `expiry`, and reloads it."""
    config["modules"][0]["config"]["expiry"] = expiry
    glia.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    status, _, raw = http_request(
        "POST", f"{glia.url}/_glia/v1/admin/reload", b"", {"Authorization": f"Bearer {GLIA_TOKEN}"}
    )
    assert status == 200, raw
    assert json.loads(raw)["replaced"] == ["account_expiry"], raw


def test_a_reload_that_moves_an_expiry_date_ends_the_reuse_of_the_old_answer(
    glia_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with expiry_behind_synapse(glia_bin, tmp_path_factory, {"expiry": {mxid("moved"): FAR_FUTURE_MS}}) as servers:
        glia, synapse, config = servers
        moved, later = synapse.register("moved"), synapse.register("later")
        before = decisions(glia)
        for _ in range(3):
            assert moved.whoami().status == 200
        assert decisions(glia) - before == 1  # reused: valid until 2100

        # The date moves to the past. The next response from glia (here: another user's
        # registration) names the new generation: the old answer is not used again.
        reload_with_expiry(glia, config, {mxid("moved"): 0, mxid("later"): FAR_FUTURE_MS})
        synapse.register("bystander")
        refused = moved.whoami()
        assert (refused.status, refused.body.get("errcode")) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT")

        # With nothing else heard from glia, the bridge asks again once FRESH_S has passed.
        assert later.whoami().status == 200
        reload_with_expiry(glia, config, {mxid("moved"): 0, mxid("later"): 0})
        time.sleep(FRESH_S + 0.2)
        refused = later.whoami()
        assert (refused.status, refused.body.get("errcode")) == (403, "ORG_MATRIX_EXPIRED_ACCOUNT")
