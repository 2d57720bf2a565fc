"""`is_user_expired` answers that hold for a while, through a real Synapse: glia's
`account_expiry` says a new user's "not expired" holds until their expiry date
(`default_validity_ms` after registering), the bridge reuses it for every authenticated
request until then, and asks glia again the first time after.

glia's decisions are counted on its `/metrics`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import GLIA_TOKEN, Glia, Synapse, bridge_module, free_port, http_request

#: How long a new user stays valid: long enough for the requests before it, short for the test.
VALIDITY_MS = 4000


@pytest.fixture(scope="module")
def servers(glia_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Glia, Synapse]]:
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "auth_token": GLIA_TOKEN,
        "modules": [{"module": "account_expiry", "config": {"default_validity_ms": VALIDITY_MS}}],
    }
    glia = Glia.start(glia_bin, tmp_path_factory.mktemp("glia"), config, port)
    try:
        synapse = Synapse.start(tmp_path_factory.mktemp("synapse"), [bridge_module(glia.url)])
    except RuntimeError as e:
        glia.stop()
        pytest.fail(str(e), pytrace=False)
    yield glia, synapse
    synapse.stop()
    glia.stop()


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
