"""What a module registered through the host's `ModuleApi`: its callbacks, auth checkers and
web resources, recorded by the same calls Synapse's own registries receive.

Synapse's `ModuleApi.register_*_callbacks` methods only check their arguments and delegate to
registries the homeserver holds (`hs.get_module_api_callbacks().spam_checker`, the password
auth provider, the presence router, the event serializer, each database's background updater).
The host keeps Synapse's own `register_*` methods and gives them these recorders instead, so a
module registers exactly as it does inside Synapse, with Synapse's own argument checks, and the
rules Synapse applies to what is registered (spec §2.2) are applied here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from glia_synapse.catalogue import BY_NAME, CHECK_AUTH, CallbackSpec

logger = logging.getLogger(__name__)

#: A module's callback: a function Synapse would call.
Function = Callable[..., Any]

#: The keyword a register method takes a callback as, when it is not the callback's name.
_BY_KEYWORD = {spec.keyword: spec.name for spec in BY_NAME.values() if spec.keyword}

#: The callbacks Synapse allows one registration of (spec §2.2).
_SINGLE_SLOTS = ("on_legacy_send_mail", "on_legacy_renew", "on_legacy_admin_request")


@dataclass(frozen=True)
class AuthChecker:
    """One entry of `auth_checkers`: a login type, its fields, its `check_auth` function."""

    login_type: str
    fields: tuple[str, ...]
    function: Function


@dataclass
class Registry:
    """Everything the module registered, in registration order."""

    callbacks: dict[str, Function] = field(default_factory=dict)
    auth_checkers: list[AuthChecker] = field(default_factory=list)
    #: Web resources (Twisted `Resource`s) by path; the first registration of a path wins.
    web_resources: dict[str, Any] = field(default_factory=dict)
    _background_controller: bool = False

    def add(self, name: str, function: Function | None) -> None:
        """Records `function` as the module's `name` callback (None: not registered)."""
        if function is None:
            return
        name = _BY_KEYWORD.get(name, name)
        if name not in BY_NAME:
            raise TypeError(f"unknown callback {name!r}")
        if name in self.callbacks:
            if name in _SINGLE_SLOTS:
                raise RuntimeError(f"Tried to register {name} twice")
            # glia asks a module once per callback; Synapse would call both functions.
            logger.warning("the module registered %s twice; glia calls the first registration only", name)
            return
        self.callbacks[name] = function

    def add_all(self, callbacks: Mapping[str, Function | None]) -> None:
        """Records every non-None callback of one `register_*` call."""
        for name, function in callbacks.items():
            self.add(name, function)

    def add_auth_checkers(self, checkers: Mapping[tuple[str, tuple[str, ...]], Function]) -> None:
        """Records `auth_checkers` as Synapse does: field names must be strings."""
        for (login_type, fields), function in checkers.items():
            if not all(isinstance(f, str) for f in fields):
                raise RuntimeError(
                    f"A module tried to register support for login type: {login_type} with parameters {fields}"
                    " but all parameter names must be strings"
                )
            self.auth_checkers.append(AuthChecker(login_type, tuple(fields), function))

    def add_background_controller(self, callbacks: Mapping[str, Function | None]) -> None:
        """The background-update controller: only the first registration counts, whole."""
        if self._background_controller:
            logger.warning("a background update controller is already registered; ignoring this one")
            return
        self._background_controller = True
        self.add_all(callbacks)

    def add_web_resource(self, path: str, resource: Any) -> None:
        """Records a web resource; a second registration of a path is ignored, as in Synapse."""
        if path in self.web_resources:
            logger.warning("module web resource %s registered twice; keeping the first", path)
            return
        self.web_resources[path] = resource

    def handler(self, callback: str, args: Mapping[str, Any]) -> Function | None:
        """The function serving an invocation of `callback` (for `check_auth`, the checker of
        the request's login type)."""
        if callback == CHECK_AUTH.name:
            login_type = args.get("login_type")
            return next((c.function for c in self.auth_checkers if c.login_type == login_type), None)
        return self.callbacks.get(callback)

    def describe(self) -> dict[str, Any]:
        """The module's `Description` (bus schema): what glia should plan."""
        callbacks = list(self.callbacks)
        if self.auth_checkers or "check_3pid_auth" in self.callbacks:
            # glia's own: the login result for a post-login callback an auth checker returns.
            callbacks.append("post_login")
        return {
            "callbacks": callbacks,
            "auth_checkers": [{"login_type": c.login_type, "fields": list(c.fields)} for c in self.auth_checkers],
            "web_resources": list(self.web_resources),
            "web_resource_subtrees": self.subtrees(),
        }

    def subtrees(self) -> list[str]:
        """The web resource paths that also serve every path below them (Twisted leaves)."""
        return [path for path, resource in self.web_resources.items() if getattr(resource, "isLeaf", False)]


def spec(callback: str) -> CallbackSpec:
    """The catalogue's entry for `callback`."""
    return BY_NAME[callback]


class CategoryRecorder:
    """Stands for one of Synapse's callback registries (`spam_checker`, `account_validity`,
    ...): whatever register method the `ModuleApi` calls on it records into the registry."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def register_callbacks(self, **callbacks: Function | None) -> None:
        """`<category>.register_callbacks(**kw)`."""
        self._registry.add_all(callbacks)

    def register_third_party_rules_callbacks(self, **callbacks: Function | None) -> None:
        """`third_party_event_rules.register_third_party_rules_callbacks(**kw)`."""
        self._registry.add_all(callbacks)

    def register_presence_router_callbacks(self, **callbacks: Function | None) -> None:
        """The presence router: both callbacks or neither (Synapse raises otherwise)."""
        present = [name for name, function in callbacks.items() if function is not None]
        if len(present) == 1:
            raise RuntimeError(
                "PresenceRouter modules must register neither or both of the paired callbacks: "
                "[get_users_for_states, get_interested_users]"
            )
        self._registry.add_all(callbacks)

    def register_password_auth_provider_callbacks(
        self, *, auth_checkers: Mapping[tuple[str, tuple[str, ...]], Function] | None = None, **callbacks: Any
    ) -> None:
        """The password auth provider's callbacks and auth checkers."""
        self._registry.add_all(callbacks)
        self._registry.add_auth_checkers(auth_checkers or {})

    def register_module_callbacks(self, **callbacks: Function | None) -> None:
        """The account data handler's `register_module_callbacks`."""
        self._registry.add_all(callbacks)

    def register_add_extra_fields_to_unsigned_client_event_callback(self, callback: Function) -> None:
        """The event serializer's `add_field_to_unsigned` registration."""
        self._registry.add("add_field_to_unsigned", callback)

    def register_update_controller_callbacks(self, **callbacks: Function | None) -> None:
        """A database's background updater: the controller."""
        self._registry.add_background_controller(callbacks)


class Callbacks:
    """Stands for `hs.get_module_api_callbacks()`: every category records into one registry."""

    def __init__(self, registry: Registry) -> None:
        recorder = CategoryRecorder(registry)
        self.spam_checker = self.third_party_event_rules = self.account_validity = recorder
        self.media_repository = self.ratelimit = self.federation = recorder
