"""What a hosted module gets for each public member of Synapse's `ModuleApi`: the one table.

Every public method and property of `synapse.module_api.ModuleApi` (and of its two managers,
`public_room_list_manager` and `account_data_manager`) has an entry here saying how the host
gives it to a module:

- `host`: Synapse's own code, run in the host process (`register_*`, the clock, the
  properties, ...);
- `bridge`: asked of Synapse's main process through the bridge's `ModuleApi` channel, which
  calls Synapse's real `ModuleApi` (`glia_synapse.module_api_calls.CALLS` holds their codecs);
- `refused`: raises `NotAvailableOutOfProcess` naming the method, for the reason given.

`api.py` builds `HostModuleApi` from it, `docs/module-api.md` is generated from it
(`python -m glia_python_host.api_table`), and `deploy/python-host/tests/test_api_table.py`
fails when Synapse's class has a member this table does not list, or the page disagrees.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

HOST = "host"
BRIDGE = "bridge"
REFUSED = "refused"

#: Under Synapse workers, what every `bridge` entry does unless its entry says more: the bridge's
#: channel is served by Synapse's main process only, so the call runs there.
ON_MAIN = "runs on the main process (the bridge's channel), whichever Synapse process sent the callback"


@dataclass(frozen=True)
class Entry:
    """How one `ModuleApi` member reaches a hosted module."""

    #: `host`, `bridge` or `refused`.
    how: str
    #: Why, or what differs from Synapse; one sentence.
    why: str
    #: What happens with Synapse workers, where that differs from "as in one process".
    workers: str = ""


def _host(why: str, workers: str = "") -> Entry:
    return Entry(HOST, why, workers)


def _bridge(why: str = "Synapse's own answer", workers: str = ON_MAIN) -> Entry:
    return Entry(BRIDGE, why, workers)


def _refused(why: str) -> Entry:
    return Entry(REFUSED, why)


_REGISTER = "Synapse's own method; the callbacks are served to glia"
_NOT_MAIN = "runs on the main process; natively a module on a worker may not call it"

#: Every public member, by its dotted name on the `ModuleApi`.
TABLE: dict[str, Entry] = {
    # -- registering callbacks (Synapse's own code, recorded by the host) --
    "register_spam_checker_callbacks": _host(_REGISTER),
    "register_account_validity_callbacks": _host(_REGISTER),
    "register_ratelimit_callbacks": _host(_REGISTER),
    "register_media_repository_callbacks": _host(_REGISTER),
    "register_third_party_rules_callbacks": _host(_REGISTER),
    "register_presence_router_callbacks": _host(_REGISTER),
    "register_password_auth_provider_callbacks": _host(
        _REGISTER + "; a post-login callback an auth checker returns is kept in the host and awaited "
        "with the login result, as Synapse awaits it"
    ),
    "register_background_update_controller_callbacks": _host(_REGISTER),
    "register_account_data_callbacks": _host(_REGISTER),
    "register_add_extra_fields_to_unsigned_client_event_callbacks": _host(_REGISTER),
    "register_federation_callbacks": _host(_REGISTER),
    "register_web_resource": _host(
        "rendered by the host's own Twisted site and served through glia and the bridge, "
        "on `placement: nats` too (glia sends the request to the module's host over NATS)"
    ),
    # -- properties --
    "http_client": _host("a real `SimpleHttpClient` of the host's (outbound requests leave from the host)"),
    "public_room_list_manager": _host("its methods are listed below"),
    "account_data_manager": _host("its methods are listed below"),
    "public_baseurl": _host("from glia's `python.public_baseurl`"),
    "email_app_name": _host("from glia's `python.email_app_name`"),
    "server_name": _host("from glia's `python.server_name`"),
    "worker_name": _host("from glia's `python.worker_name` (None by default, as on a main process)"),
    "worker_app": _host("None, as on a main process"),
    # -- asked of the homeserver --
    "get_userinfo_by_id": _bridge(),
    "is_user_admin": _bridge(),
    "set_user_admin": _bridge(),
    "get_profile_for_user": _bridge(),
    "get_threepids_for_user": _bridge(),
    "check_user_exists": _bridge(),
    "register": _bridge(),
    "register_user": _bridge(),
    "register_device": _bridge(),
    "record_user_external_id": _bridge(),
    "create_login_token": _bridge(),
    "invalidate_access_token": _bridge(),
    "get_state_events_in_room": _bridge(),
    "update_room_membership": _bridge(),
    "create_and_send_event_into_room": _bridge(),
    "send_local_online_presence_to": _bridge(
        workers="runs on the main process, which must write the presence stream (Synapse's default), "
        "as natively the calling process must"
    ),
    "set_presence_for_users": _bridge(
        workers="runs on the main process, which must write the presence stream (Synapse's default), "
        "as natively the calling process must"
    ),
    "send_http_push_notification": _bridge(
        workers="runs on the main process: it reaches the pushers the main process holds, as a "
        "native call on the main process does"
    ),
    "send_mail": _bridge("sent by Synapse with its `email:` settings"),
    "get_user_ip_and_agents": _bridge(),
    "get_room_state": _bridge(),
    "check_username": _bridge(),
    "store_remote_3pid_association": _bridge(),
    "set_push_rule_action": _bridge(workers=_NOT_MAIN + " (RuntimeError)"),
    "get_monthly_active_users_by_service": _bridge(),
    "get_canonical_room_alias": _bridge(),
    "lookup_room_alias": _bridge(),
    "create_room": _bridge(),
    "delete_room": _bridge(),
    "set_displayname": _bridge(),
    "public_room_list_manager.room_is_in_public_room_list": _bridge(),
    "public_room_list_manager.add_room_to_public_room_list": _bridge(),
    "public_room_list_manager.remove_room_from_public_room_list": _bridge(),
    "account_data_manager.get_global": _bridge(),
    "account_data_manager.put_global": _bridge(),
    # -- Synapse's own code, in the host --
    "get_qualified_user_id": _host("Synapse's own code"),
    "is_mine": _host("Synapse's own code, against `python.server_name`"),
    "check_push_rule_actions": _host("Synapse's own check (`check_actions`)"),
    "read_templates": _host(
        "Synapse's own loader, reading Synapse's templates and the given directory on the host's "
        "filesystem; Synapse's `custom_template_directory` is not known to the host"
    ),
    "sleep": _host("Synapse's `Clock` on the host's reactor"),
    "looping_background_call": _host(
        "Synapse's `Clock` on the host's reactor",
        workers="runs in every host: a host is not a Synapse worker and always runs background tasks",
    ),
    "delayed_background_call": _host("Synapse's `Clock` on the host's reactor"),
    "should_run_background_tasks": _host("True: a host always runs its module's background tasks"),
    "run_as_background_process": _host("Synapse's own code"),
    "get_current_time_msec": _host("Synapse's `Clock`"),
    "defer_to_thread": _host("the host's thread pool"),
    "defer_to_threadpool": _host("the given thread pool, in the host"),
    "register_cached_function": _host(
        "the cache lives in the host; there is no other process to invalidate it in",
        workers="caches are per host; Synapse's other processes are not told",
    ),
    "invalidate_cache": _host(
        "invalidates the host's own cache only",
        workers="caches are per host; Synapse's other processes are not told",
    ),
    # -- refused --
    "get_user_by_req": _refused(
        "needs Synapse's `SynapseRequest`, which exists only in Synapse's process (the host renders "
        "web resources with its own Twisted site)"
    ),
    "complete_sso_login_async": _refused(
        "needs Synapse's `SynapseRequest` to write the redirect to, which exists only in Synapse's process"
    ),
    "run_db_interaction": _refused(
        "runs the module's own function inside a transaction on Synapse's database, which is not "
        "the host's; Python functions cannot cross the channel"
    ),
}


def render() -> str:
    """The table as the Markdown of `docs/module-api.md`'s generated part."""
    rows = ["| member | how | why | under Synapse workers |", "|---|---|---|---|"]
    for name in sorted(TABLE):
        entry = TABLE[name]
        rows.append(f"| `{name}` | {entry.how} | {entry.why} | {entry.workers or 'as in one process'} |")
    return "\n".join(rows) + "\n"


def names(how: str) -> frozenset[str]:
    """The members given to a module in one way."""
    return frozenset(name for name, entry in TABLE.items() if entry.how == how)


if __name__ == "__main__":
    sys.stdout.write(render())
