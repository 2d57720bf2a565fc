"""The "which modules work" table (docs/python-host.md) states only what a test shows: each row
is a module an end-to-end test runs natively and hosted (its class configured in the test file
the row names), at the version setup.sh installs, and each such module has a row."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE.parent.parent / "docs" / "python-host.md"
SETUP = HERE / "setup.sh"

#: The real modules the end-to-end tests run both ways: the row's first cell -> (the class the
#: test configures, the pin setup.sh installs or None for the vendored git copy).
TESTED = {
    "matrix-synapse-ldap3 0.4.0": ("ldap_auth_provider.LdapAuthProviderModule", 'ldap3_version="0.4.0"'),
    "shared-secret-authenticator 2.0.1": (
        "shared_secret_authenticator.SharedSecretAuthProvider",
        'shared_secret_version="2.0.1"',
    ),
    "synapse-domain-rule-checker v1.0.1 (git)": ("synapse_domain_rule_checker.DomainRuleChecker", None),
    "synapse-http-antispam 0.5.1": ("synapse_http_antispam.HTTPAntispam", 'antispam_version="0.5.1"'),
    "synapse-token-authenticator 0.14.1": (
        "synapse_token_authenticator.TokenAuthenticator",
        "synapse-token-authenticator==0.14.1",
    ),
    "synapse-auto-accept-invite 1.2.0": (
        "synapse_auto_accept_invite.InviteAutoAccepter",
        "synapse-auto-accept-invite==1.2.0",
    ),
    "synapse-registration-notifier 0.1.2": (
        "synapse_registration_notifier.RegistrationNotifier",
        "synapse-registration-notifier==0.1.2",
    ),
    "synapse-room-access-rules 1.0.0": ("room_access_rules.RoomAccessRules", "synapse-room-access-rules==1.0.0"),
    "synapse-freeze-room 1.1.0": ("freeze_room.FreezeRoom", "synapse-freeze-room==1.1.0"),
    "synapse-stickerpicker 0.1.0": ("synapse_stickerpicker.AppendStickerPickerData", "synapse-stickerpicker==0.1.0"),
}


def table_rows() -> list[list[str]]:
    """The cells of the "Which modules work" table's rows (not its header)."""
    section = PAGE.read_text().split("## Which modules work", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def sources(test_file: Path) -> str:
    """A test file's source and that of the helpers it imports from this directory (the
    antispam module's entry is made in antispam.py)."""
    text = test_file.read_text()
    helpers = re.findall(r"^from (\w+) import", text, re.MULTILINE)
    return text + "".join((HERE / f"{name}.py").read_text() for name in helpers if (HERE / f"{name}.py").is_file())


def test_the_table_lists_exactly_the_tested_modules() -> None:
    assert sorted(row[0] for row in table_rows()) == sorted(TESTED)


def test_each_row_names_a_test_that_runs_the_module_at_the_pinned_version() -> None:
    setup = SETUP.read_text()
    for row in table_rows():
        module, status, test = row
        assert not re.search(r"should work|not tested\b", status.split(" (not tested)")[0]), row
        test_file = HERE / test.strip("`")
        assert test_file.is_file(), row
        dotted, pin = TESTED[module]
        assert f'"{dotted}"' in sources(test_file), (module, test_file)
        assert pin is None or pin in setup, (module, pin)
