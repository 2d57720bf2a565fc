"""A Python module on `placement: nats` that misbehaves under load: hosted by `glia worker` (as
a child process it supervises) behind a real nats-server, with `glia serve` coordinating, and
a few concurrent callers. The scripted module raises, hangs past its timeout, blocks its
host's thread, leaks, writes garbage to its standard output and kills its own host, each for
some users; for everyone else it denies.

Every call must be answered (HTTP 200, one decision) by the module or by the failure policy,
never by anything else: the module's answers are denies naming it, the policy's (`allow`) name
no module. No call may reach the module twice (no invocation redelivered to a second host), and
once the hostile calls stop the module answers every call again.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness import GLIA_TOKEN, Glia, NatsServer, Process, free_port, http_request, wait_until
from hosting import ORACLE, module_info, nats_glia_config, python_path_env
from test_python_host import DEADLINE_S, scripted, write_script

sys.path.insert(0, str(ORACLE))

from scripted_common import read_calls

#: What the module does for a user whose id contains the key (else it denies).
HOSTILE = {
    "raise": {"raise": {"exception": "a module bug"}},
    "hang": {"sleep": 30, "then": {"return": {"codes": "M_FORBIDDEN"}}},
    "block": {"block": 3, "then": {"return": {"codes": "M_FORBIDDEN"}}},
    "leak": {"leak": 1024, "then": {"return": {"codes": "M_FORBIDDEN"}}},
    "garbage": {"print": "\x00\xff not a frame {\n" * 64, "then": {"return": {"codes": "M_FORBIDDEN"}}},
    "die": {"exit": 1},
}
#: Whose calls the module itself answers (a deny), when nothing else gets in the way.
MODULE_ANSWERS = ("normal", "leak", "garbage")
#: Whose calls only the failure policy can answer.
POLICY_ANSWERS = ("raise", "hang", "die")
CALLERS = 4
CALLS_PER_CALLER = 40


def script() -> dict[str, Any]:
    action: Any = {"return": {"codes": "M_FORBIDDEN"}}
    for kind, hostile in HOSTILE.items():
        action = {"if": {"arg": "user_id", "contains": f"-{kind}-"}, "then": hostile, "else": action}
    return {"hostile": {"user_may_create_room": action}}


def kind_of(call: int) -> str:
    """The mix each caller sends: mostly normal calls, a hostile one of each kind in turn."""
    kinds = list(HOSTILE)
    if call % 3 != 2:
        return "normal"
    return kinds[(call // 3) % len(kinds)]


def decide(glia: Glia, user: str) -> dict[str, Any]:
    status, _, raw = http_request(
        "POST",
        f"{glia.url}/_glia/v1/callbacks/user_may_create_room",
        {"user_id": user, "room_config": {}},
        {"Authorization": f"Bearer {GLIA_TOKEN}"},
        timeout=DEADLINE_S + 10,
    )
    assert status == 200, (user, status, raw)
    return json.loads(raw)  # type: ignore[no-any-return]


def by_module(answer: dict[str, Any]) -> bool:
    return answer.get("decision") == "deny" and answer.get("module") == "hostile"


def by_policy(answer: dict[str, Any]) -> bool:
    return answer == {"decision": "allow"} or (answer.get("decision") == "allow" and "module" not in answer)


def test_a_hostile_python_module_on_nats_loses_nothing_and_recovers(glia_bin: Path, tmp_path: Path) -> None:
    (tmp_path / "nats").mkdir()
    nats = NatsServer.start(tmp_path / "nats")
    write_script(tmp_path, script())
    port = free_port()
    entry = scripted("hostile", tmp_path, ["user_may_create_room"])
    entry.update(placement="nats", failure_policy="allow", timeout="1s")
    config = nats_glia_config(port, nats.url, entry, deadline=f"{DEADLINE_S}s")
    env = python_path_env(ORACLE)
    glia = Glia.start(glia_bin, tmp_path, config, port, env=env)
    argv = [str(glia_bin), "worker", "--config", str(glia.config_path)]
    worker = Process("glia-worker", argv, tmp_path / "worker.log", env=env).start()
    try:
        wait_until(lambda: module_info(glia.url, "hostile")["state"] == "running", 180, "the worker", worker.tail)
        wait_until(lambda: by_module(decide(glia, "@warmup:x")), 180, "the module on NATS", worker.tail)

        def caller(n: int) -> list[tuple[str, dict[str, Any]]]:
            users = [f"@c{n}-{kind_of(i)}-{i}:x" for i in range(CALLS_PER_CALLER)]
            return [(user, decide(glia, user)) for user in users]

        with ThreadPoolExecutor(CALLERS) as pool:
            answers = [a for batch in pool.map(caller, range(CALLERS)) for a in batch]

        assert len(answers) == CALLERS * CALLS_PER_CALLER
        odd = [(u, a) for u, a in answers if not (by_module(a) or by_policy(a))]
        assert not odd, f"answered by neither the module nor its policy: {odd}"
        wrong = [(u, a) for u, a in answers if any(f"-{k}-" in u for k in POLICY_ANSWERS) and by_module(a)]
        assert not wrong, f"the module cannot have answered these: {wrong}"
        tally = Counter((u.split("-")[1], "module" if by_module(a) else "policy") for u, a in answers)
        print("who answered:", dict(sorted(tally.items())), file=sys.stderr)
        assert any(tally[(k, "module")] for k in MODULE_ANSWERS), tally

        seen = Counter(call["args"]["user_id"] for call in read_calls(tmp_path / "calls.jsonl"))
        twice = [user for user, times in seen.items() if times > 1 and user != "@warmup:x"]
        assert not twice, f"invocations that reached the module twice: {twice}"

        # The hosts that died were replaced: every call is the module's again.
        wait_until(lambda: by_module(decide(glia, "@after-normal-0:x")), 180, "recovery", worker.tail)
        after = [decide(glia, f"@after-normal-{i}:x") for i in range(1, 21)]
        assert all(by_module(a) for a in after), after
        assert worker.running(), worker.tail()
    finally:
        worker.stop()
        glia.stop()
        nats.stop()
