"""A module that calls the `ModuleApi` on request: the same code natively in Synapse and hosted
by glia, so `test_module_api.py` can compare what each `ModuleApi` method does on both.

Load it with this directory on `PYTHONPATH`:

```yaml
modules:
  - module: api_probe.ApiProbe
    config: {}
```

It serves `POST /_synapse/client/api_probe` with `{"call": "set_displayname", "args": {...},
"user_ids": ["user_id"], "room_ids": [...]}` (the named arguments are made `UserID` /
`RoomID`, as Synapse's signature wants) and answers `{"type": <result's class>, "value":
<result as JSON>}` or `{"raised": <exception class>, "code", "errcode", "message"}`. Events
are reduced to what both homeservers share (their ids and timestamps differ).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attr
from synapse.api.errors import SynapseError
from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import DomainSpecificString, RoomID, UserID
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

PATH = "/_synapse/client/api_probe"

#: What of an event is the same on both homeservers.
EVENT_KEYS = ("type", "state_key", "sender", "content", "membership")


def to_json(value: Any) -> Any:
    """A result as JSON both homeservers can agree on."""
    if isinstance(value, EventBase):
        pdu = value.get_dict()
        return {"event": {key: pdu.get(key) for key in EVENT_KEYS if key in pdu}}
    if isinstance(value, DomainSpecificString):
        return value.to_string()
    if attr.has(type(value)):
        return {k: to_json(v) for k, v in attr.asdict(value, recurse=False).items()}
    if isinstance(value, Mapping):
        return {str(k if not isinstance(k, tuple) else list(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [to_json(v) for v in value]
    return value


def answer_for(result: Any) -> dict[str, Any]:
    """What a call returned: its class's name (types must match too) and its JSON."""
    return {"type": type(result).__name__, "value": to_json(result)}


def raised(e: Exception) -> dict[str, Any]:
    """What a call raised: its class's name, message and, for a `SynapseError`, status and errcode."""
    if isinstance(e, SynapseError):
        return {"raised": type(e).__name__, "code": e.code, "errcode": e.errcode, "message": e.msg}
    return {"raised": type(e).__name__, "message": str(e)}


class ProbeResource(Resource):
    """`POST` runs one `ModuleApi` call and answers what it returned or raised."""

    isLeaf = True

    def __init__(self, api: ModuleApi) -> None:
        super().__init__()
        self._api = api

    def render_POST(self, request: Any) -> Any:
        """Runs the call in the background (as Synapse's own resources do); answers when done."""
        self._api.run_as_background_process("api_probe", self._answer, request)
        return NOT_DONE_YET

    async def _answer(self, request: Any) -> None:
        body = json.loads(request.content.read())
        try:
            answer = answer_for(await self._call(body))
            payload = json.dumps(answer).encode()
        except Exception as e:  # noqa: BLE001 (what the module got is the answer)
            payload = json.dumps(raised(e)).encode()
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        request.write(payload)
        request.finish()

    async def _call(self, body: Mapping[str, Any]) -> Any:
        args = dict(body.get("args") or {})
        for name in body.get("user_ids") or ():
            args[name] = UserID.from_string(args[name])
        for name in body.get("room_ids") or ():
            args[name] = RoomID.from_string(args[name])
        target: Any = self._api
        for part in str(body["call"]).split("."):
            target = getattr(target, part)
        result = target(**args)
        if hasattr(result, "__await__"):
            result = await result
        return result


class ApiProbe:
    """Registers the probe's web resource; nothing else."""

    def __init__(self, config: Mapping[str, Any], api: ModuleApi) -> None:
        api.register_web_resource(PATH, ProbeResource(api))

    @staticmethod
    def parse_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
        return config
