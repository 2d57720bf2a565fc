//! Config loading: every error kind names the file, the line and column, the module entry
//! (index and name), the key and what is wrong, as `FILE:LINE:COL: modules[i] (name): key
//! `k`: message`; valid configs load, and module entries inherit `defaults:`.
//!
//! Each YAML document is written one line per string literal, with its line number in a
//! comment, so the expected positions can be read off the test.

mod support;

use glia_bus_schema::Callback;
use glia_runtime::config::{
    self, BusConfig, ConfigFileError, GliaConfig, ModuleConfig, Position, DEFAULT_DEADLINE,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT,
};
use glia_runtime::policy::FailurePolicy;
use glia_tests::TestGlia;
use std::time::Duration;
use support::TempFile;

/// The error loading `yaml` (as `test.yaml`) fails with.
fn error_of(yaml: &str) -> ConfigFileError {
    match TestGlia::config(yaml) {
        Ok(cfg) => panic!(
            "expected a config error, but it loaded {} modules:\n{yaml}",
            cfg.modules.len()
        ),
        Err(e) => e,
    }
}

/// Loads `yaml`, panicking with the error's message.
fn load(yaml: &str) -> GliaConfig {
    TestGlia::config(yaml).unwrap_or_else(|e| panic!("config should load: {e}\n{yaml}"))
}

/// Asserts every part of the error, then its whole message.
fn assert_error(
    err: &ConfigFileError,
    (line, column): (u32, u32),
    module: Option<(usize, &str)>,
    key: &str,
    message: &str,
) {
    assert_eq!(err.file, "test.yaml", "{err}");
    assert_eq!(err.position, Some(Position { line, column }), "{err}");
    assert_eq!(
        err.module,
        module.map(|(i, n)| (i, n.to_owned())),
        "module of {err}"
    );
    assert_eq!(err.key, key, "key of {err}");
    assert_eq!(err.message, message, "message of {err}");
    let mut expected = format!("test.yaml:{line}:{column}: ");
    if let Some((index, name)) = module {
        expected.push_str(&format!("modules[{index}] ({name}): "));
    }
    if !key.is_empty() {
        expected.push_str(&format!("key `{key}`: "));
    }
    expected.push_str(message);
    assert_eq!(err.to_string(), expected);
}

fn module<'a>(cfg: &'a GliaConfig, name: &str) -> &'a ModuleConfig {
    cfg.modules
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no module named {name}"))
}

// ----- module entries ----------------------------------------------------------------------

#[test]
fn unknown_module_lists_the_known_modules() {
    let yaml = concat!(
        "listen: 127.0.0.1:0\n", // 1
        "modules:\n",            // 2
        "  - module: demo\n",    // 3
        "  - module: nope\n",    // 4
        "    config: {}\n",      // 5
    );
    let known = glia_tests::registry().names().join(", ");
    assert!(known.contains("demo, "), "{known}");
    assert!(known.contains("user_restrictions"), "{known}");
    assert_error(
        &error_of(yaml),
        (4, 5),
        Some((1, "nope")),
        "module",
        &format!("unknown module \"nope\"; known modules: {known}"),
    );
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    let yaml = concat!(
        "modules:\n",           // 1
        "  - module: demo\n",   // 2
        "    priority: 1\n",    // 3
        "    timeout: \"5\"\n"  // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 5),
        Some((0, "demo")),
        "timeout",
        "duration \"5\" needs a unit: ms, s, m, h or d (e.g. \"250ms\", \"5s\")",
    );
}

/// `timeout: 5` is a YAML number, the likeliest way to forget the unit: the message should
/// say the unit is missing, as it does for `"5"`, rather than that a string was expected.
#[test]
fn a_bare_number_timeout_says_it_needs_a_unit() {
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    priority: 1\n",  // 3
        "    timeout: 5\n",   // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");
    assert_eq!(err.key, "timeout", "{err}");
    assert!(err.message.contains("needs a unit"), "{err}");

    let yaml = concat!(
        "defaults:\n",    // 1
        "  timeout: 5\n", // 2
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 2, column: 3 }), "{err}");
    assert_eq!(err.key, "defaults.timeout", "{err}");
    assert!(err.message.contains("needs a unit"), "{err}");
}

#[test]
fn a_duration_that_is_not_a_number_is_refused() {
    let yaml = concat!(
        "modules:\n",             // 1
        "  - module: demo\n",     // 2
        "    timeout: fast\n",    // 3
        "  - module: scripted\n"  // 4
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((0, "demo")),
        "timeout",
        "duration \"fast\" does not start with a number",
    );
    let yaml = concat!(
        "deadline: 10s\n",        // 1
        "defaults:\n",            // 2
        "  timeout: 5 parsecs\n"  // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 3),
        None,
        "defaults.timeout",
        "duration \"5 parsecs\" has unknown unit \"parsecs\": use ms, s, m, h or d",
    );
}

/// Errors found while reading an entry's own keys name the entry by its `name:` when it has
/// one, as every later error of the same entry does.
#[test]
fn entry_errors_use_the_entry_name_when_it_has_one() {
    let yaml = concat!(
        "modules:\n",           // 1
        "  - module: demo\n",   // 2
        "    name: slowpoke\n", // 3
        "    timeout: fast\n",  // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.module, Some((0, "slowpoke".to_owned())), "{err}");
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");

    // A config error of the same entry already does.
    let yaml = concat!(
        "modules:\n",                         // 1
        "  - module: demo\n",                 // 2
        "    name: slowpoke\n",               // 3
        "    config:\n",                      // 4
        "      denied_users: [\"nobody\"]\n", // 5
    );
    assert_error(
        &error_of(yaml),
        (5, 22),
        Some((0, "slowpoke")),
        "config.denied_users[0]",
        "bad config for module \"demo\": \"nobody\" is not a user id (expected @localpart:server)",
    );
}

#[test]
fn a_bad_module_config_points_at_the_key_inside_config() {
    let yaml = concat!(
        "listen: 127.0.0.1:0\n",             // 1
        "modules:\n",                        // 2
        "  - module: user_restrictions\n",   // 3
        "    config:\n",                     // 4
        "      rules:\n",                    // 5
        "        - match: \"@a.*\"\n",       // 6
        "          allow: [invite]\n",       // 7
        "        - match: \"@(unclosed\"\n", // 8
        "          deny: [invite]\n",        // 9
    );
    assert_error(
        &error_of(yaml),
        (8, 11),
        Some((0, "user_restrictions")),
        "config.rules[1].match",
        "bad config for module \"user_restrictions\": invalid regex \"@(unclosed\": unclosed group",
    );

    // A key the module does not know, and a value of the wrong type.
    let yaml = concat!(
        "modules:\n",              // 1
        "  - module: demo\n",      // 2
        "    config:\n",           // 3
        "      denied_user: []\n", // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 7 }), "{err}");
    assert_eq!(err.key, "config.denied_user", "{err}");
    assert!(
        err.message
            .starts_with("bad config for module \"demo\": unknown field `denied_user`"),
        "{err}"
    );
    let yaml = concat!(
        "modules:\n",              // 1
        "  - module: demo\n",      // 2
        "    config:\n",           // 3
        "      denied_users: x\n", // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 7),
        Some((0, "demo")),
        "config.denied_users",
        "bad config for module \"demo\": invalid type: string \"x\", expected a sequence",
    );
    // A config block that is not a mapping.
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    config: [1]\n",  // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((0, "demo")),
        "config",
        "bad config for module \"demo\": the config must be a mapping, not a list",
    );
}

#[test]
fn two_entries_with_the_same_name_are_refused() {
    // No `name:`: both are called after their module type; the error is on `module:`.
    let yaml = concat!(
        "modules:\n",                      // 1
        "  - module: demo\n",              // 2
        "  - module: list_spam_checker\n", // 3
        "    config:\n",                   // 4
        "      evil_users: [\"@e:hs\"]\n", // 5
        "  - module: demo\n",              // 6
    );
    assert_error(
        &error_of(yaml),
        (6, 5),
        Some((2, "demo")),
        "module",
        "module name \"demo\" is already used by modules[0]; give this entry a distinct `name:`",
    );

    // An explicit duplicate `name:`: the error is on `name:`.
    let yaml = concat!(
        "modules:\n",             // 1
        "  - module: demo\n",     // 2
        "    name: gate\n",       // 3
        "  - module: scripted\n", // 4
        "    config: {}\n",       // 5
        "    name: gate\n",       // 6
    );
    assert_error(
        &error_of(yaml),
        (6, 5),
        Some((1, "gate")),
        "name",
        "module name \"gate\" is already used by modules[0]; give this entry a distinct `name:`",
    );

    // A `name:` equal to another entry's module type clashes too.
    let yaml = concat!(
        "modules:\n",             // 1
        "  - module: scripted\n", // 2
        "    name: demo\n",       // 3
        "  - module: demo\n",     // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 5),
        Some((1, "demo")),
        "module",
        "module name \"demo\" is already used by modules[0]; give this entry a distinct `name:`",
    );

    // Distinct names make the same module type load twice.
    let cfg = load(concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "  - module: demo\n", // 3
        "    name: demo2\n",  // 4
    ));
    let names: Vec<&str> = cfg.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["demo", "demo2"]);
    assert_eq!(cfg.modules[1].module, "demo");
    assert_eq!(cfg.modules[1].index, 1);
}

// ----- unknown keys ------------------------------------------------------------------------

#[test]
fn an_unknown_top_level_key_is_refused() {
    let yaml = concat!(
        "listen: 127.0.0.1:0\n", // 1
        "\n",                    // 2
        "moduels:\n",            // 3
        "  - module: demo\n",    // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 3, column: 1 }), "{err}");
    assert_eq!(err.module, None);
    assert_eq!(err.key, "moduels");
    assert!(
        err.message
            .starts_with("unknown field `moduels`, expected one of `listen`, "),
        "{err}"
    );
    assert!(err.message.contains("`modules`"), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.yaml:3:1: key `moduels`: unknown field `moduels`"),
        "{err}"
    );

    // Inside `defaults:` (which has no `priority`: priorities are set per module).
    let yaml = concat!(
        "defaults:\n",     // 1
        "  timeout: 1s\n", // 2
        "  priority: 5\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 3, column: 3 }), "{err}");
    assert_eq!(err.key, "defaults.priority");
    assert!(
        err.message
            .starts_with("unknown field `priority`, expected one of `timeout`"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_in_a_module_entry_is_refused() {
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    config: {}\n",   // 3
        "    timeuot: 1s\n",  // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");
    assert_eq!(err.module, Some((0, "demo".to_owned())));
    assert_eq!(err.key, "timeuot");
    assert!(
        err.message
            .starts_with("unknown field `timeuot`, expected one of `module`, `name`, `config`"),
        "{err}"
    );
    assert!(err.message.contains("`timeout`"), "{err}");
    assert!(
        err.to_string()
            .starts_with("test.yaml:4:5: modules[0] (demo): key `timeuot`: unknown field"),
        "{err}"
    );
}

// ----- failure policies --------------------------------------------------------------------

#[test]
fn an_unknown_callback_in_failure_policy_is_refused() {
    let yaml = concat!(
        "modules:\n",                     // 1
        "  - module: demo\n",             // 2
        "    failure_policy:\n",          // 3
        "      default: allow\n",         // 4
        "      user_may_explode: deny\n", // 5
    );
    assert_error(
        &error_of(yaml),
        (5, 7),
        Some((0, "demo")),
        "failure_policy.user_may_explode",
        "unknown callback \"user_may_explode\" (use a callback name such as user_may_invite, or `default`)",
    );
    let yaml = concat!(
        "defaults:\n",                // 1
        "  failure_policy:\n",        // 2
        "    bogus_callback: deny\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        None,
        "defaults.failure_policy.bogus_callback",
        "unknown callback \"bogus_callback\" (use a callback name such as user_may_invite, or `default`)",
    );
}

/// A policy that is not `allow`, `deny` or `error` is refused at its own key, and the
/// message names the bad value and the valid ones (not serde's "did not match any variant
/// of untagged enum").
#[test]
fn a_bad_failure_policy_value_names_the_valid_ones() {
    let yaml = concat!(
        "modules:\n",                  // 1
        "  - module: demo\n",          // 2
        "    failure_policy: maybe\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 3, column: 5 }), "{err}");
    assert_eq!(err.module, Some((0, "demo".to_owned())));
    assert_eq!(err.key, "failure_policy", "{err}");
    for word in ["maybe", "allow", "deny", "error"] {
        assert!(err.message.contains(word), "{word} not in: {err}");
    }

    let yaml = concat!(
        "modules:\n",                     // 1
        "  - module: demo\n",             // 2
        "    failure_policy:\n",          // 3
        "      user_may_invite: maybe\n", // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 7 }), "{err}");
    assert_eq!(err.key, "failure_policy.user_may_invite", "{err}");
    for word in ["maybe", "allow", "deny", "error"] {
        assert!(err.message.contains(word), "{word} not in: {err}");
    }
}

// ----- the shape of an entry ---------------------------------------------------------------

#[test]
fn an_entry_that_is_not_a_mapping_is_refused() {
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "  - demo\n",         // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((1, "?")),
        "",
        "expected a mapping with a `module:` key",
    );
    let yaml = concat!(
        "modules:\n",    // 1
        "  - name: x\n", // 2
    );
    assert_error(
        &error_of(yaml),
        (2, 5),
        Some((0, "x")),
        "",
        "missing key `module` (the module to load)",
    );
    let yaml = concat!(
        "modules:\n", // 1
        "  a: 1\n",   // 2
    );
    assert_error(
        &error_of(yaml),
        (1, 1),
        None,
        "modules",
        "invalid type: map, expected a sequence",
    );
}

#[test]
fn a_module_key_that_is_not_a_string_is_refused() {
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    name: first\n",  // 3
        "  - module: 5\n",    // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 5),
        Some((1, "?")),
        "module",
        "expected a string",
    );
    let yaml = concat!(
        "modules:\n",           // 1
        "  - config: {}\n",     // 2
        "    module: [demo]\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((0, "?")),
        "module",
        "expected a string",
    );
}

#[test]
fn max_in_flight_zero_is_refused() {
    let yaml = concat!(
        "modules:\n",             // 1
        "  - module: demo\n",     // 2
        "    max_in_flight: 0\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((0, "demo")),
        "max_in_flight",
        "must be between 1 and 1048576",
    );
    let yaml = concat!(
        "defaults:\n",          // 1
        "  timeout: 1s\n",      // 2
        "  max_in_flight: 0\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 3),
        None,
        "defaults.max_in_flight",
        "must be between 1 and 1048576",
    );
}

// ----- top-level settings ------------------------------------------------------------------

#[test]
fn a_yaml_syntax_error_has_a_line_and_column() {
    let yaml = concat!(
        "listen: 127.0.0.1:0\n", // 1
        "modules:\n",            // 2
        "  - module: demo\n",    // 3
        "   bad: indent\n",      // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.file, "test.yaml");
    let position = err.position.expect("a syntax error has a position");
    assert_eq!(position.line, 4, "{err}");
    assert!(position.column >= 1, "{err}");
    assert_eq!(err.module, None);
    assert_eq!(err.key, "");
    assert!(err.message.starts_with("invalid YAML: "), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("test.yaml:4:{}: invalid YAML: ", position.column)),
        "{err}"
    );

    let yaml = concat!(
        "listen: [127.0.0.1, 2\n", // 1
        "modules: []\n",           // 2
    );
    let err = error_of(yaml);
    assert_eq!(err.position.map(|p| p.line), Some(2), "{err}");
    assert!(err.message.starts_with("invalid YAML: "), "{err}");

    // A duplicate key is refused where the second one is.
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    timeout: 5s\n",  // 3
        "    timeout: 6s\n",  // 4
    );
    let err = error_of(yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");
    assert!(err.message.starts_with("invalid YAML: "), "{err}");
    assert!(err.message.contains("duplicate"), "{err}");
}

#[test]
fn a_config_that_is_not_a_mapping_is_refused() {
    let err = error_of("- module: demo\n");
    assert_eq!(err.file, "test.yaml");
    assert_eq!(err.module, None);
    assert_eq!(
        err.message,
        "the config must be a mapping with a `modules:` list"
    );
    assert!(
        err.to_string()
            .ends_with(": the config must be a mapping with a `modules:` list"),
        "{err}"
    );
}

#[test]
fn an_auth_token_file_that_does_not_exist_is_refused() {
    let missing = TempFile::unused_path("no-such-token");
    let missing = missing.display().to_string();
    let yaml = format!(
        concat!(
            "listen: 127.0.0.1:0\n", // 1
            "auth_token_file: {}\n", // 2
            "modules: []\n",         // 3
        ),
        missing
    );
    let err = error_of(&yaml);
    assert_eq!(err.position, Some(Position { line: 2, column: 1 }), "{err}");
    assert_eq!(err.module, None);
    assert_eq!(err.key, "auth_token_file");
    let prefix = format!("cannot read {missing}: ");
    assert!(err.message.starts_with(&prefix), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("test.yaml:2:1: key `auth_token_file`: {prefix}")),
        "{err}"
    );
}

#[test]
fn auth_token_rules() {
    let token = TempFile::new("token", "  file-secret \n");
    let cfg = load(&format!("auth_token_file: {}\n", token.path_str()));
    assert_eq!(cfg.auth_token.as_deref(), Some("file-secret"));

    let cfg = load("auth_token: s3cret\n");
    assert_eq!(cfg.auth_token.as_deref(), Some("s3cret"));

    let yaml = format!(
        concat!(
            "auth_token: s3cret\n",  // 1
            "auth_token_file: {}\n", // 2
        ),
        token.path_str()
    );
    assert_error(
        &error_of(&yaml),
        (2, 1),
        None,
        "auth_token_file",
        "set auth_token or auth_token_file, not both",
    );

    // An empty token names the key it came from, with its line.
    let empty = TempFile::new("empty-token", "\n");
    let yaml = format!(
        concat!(
            "listen: 127.0.0.1:0\n", // 1
            "auth_token_file: {}\n", // 2
        ),
        empty.path_str()
    );
    assert_error(
        &error_of(&yaml),
        (2, 1),
        None,
        "auth_token_file",
        "the auth token is empty",
    );
    assert_error(
        &error_of("listen: 127.0.0.1:0\nauth_token: \"\"\n"),
        (2, 1),
        None,
        "auth_token",
        "the auth token is empty",
    );
}

/// A token callers could never send in an `Authorization` header is refused: it must be
/// visible ASCII.
#[test]
fn an_auth_token_must_be_visible_ascii() {
    const MESSAGE: &str = "the auth token must be visible ASCII (no spaces, control characters \
                           or non-ASCII letters): callers send it in an HTTP header";
    for token in ["s\u{e9}cret", "two words", "tab\there", "\u{1F511}"] {
        let yaml = format!(
            "listen: 127.0.0.1:0\nauth_token: {}\n",
            serde_json::to_string(token).unwrap()
        );
        assert_error(&error_of(&yaml), (2, 1), None, "auth_token", MESSAGE);
        let file = TempFile::new("odd-token", token);
        let yaml = format!("auth_token_file: {}\n", file.path_str());
        assert_error(&error_of(&yaml), (1, 1), None, "auth_token_file", MESSAGE);
    }
    assert_eq!(
        load("auth_token: \"A-z0-9._~+/=!#$%&'*^`|\"\n")
            .auth_token
            .as_deref(),
        Some("A-z0-9._~+/=!#$%&'*^`|")
    );
}

/// `auth_token_file` must name a regular file of at most 1 MiB: a device such as
/// /dev/zero would be read forever, and opening a FIFO would wait for a writer.
#[test]
fn an_auth_token_file_must_be_a_small_regular_file() {
    let fifo_file = TempFile::fifo("token-fifo");
    let fifo = fifo_file.path().to_owned();
    let big = TempFile::new("big-token", &"x".repeat((1 << 20) + 1));
    let cases = [
        ("/dev/zero".to_owned(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        ("/".to_owned(), "not a regular file"),
        (big.path_str(), "larger than 1048576 bytes"),
    ];
    for (path, why) in cases {
        let yaml = format!("listen: 127.0.0.1:0\nauth_token_file: {path}\n");
        assert_error(
            &error_of(&yaml),
            (2, 1),
            None,
            "auth_token_file",
            &format!("cannot read {path}: {why}"),
        );
    }
}

#[test]
fn other_top_level_values_are_checked() {
    let yaml = concat!(
        "listen: 127.0.0.1:0\n",  // 1
        "max_body_size: 1 GiB\n", // 2
    );
    assert_error(
        &error_of(yaml),
        (2, 1),
        None,
        "max_body_size",
        "size \"1 GiB\" has unknown unit \"GiB\": use B, KiB or MiB",
    );
    let yaml = concat!(
        "deadline: 1s\n", // 1
        "bus: nats\n",    // 2
    );
    assert_error(
        &error_of(yaml),
        (2, 1),
        None,
        "bus",
        "the NATS bus needs a url: `bus: {type: nats, url: \"nats://127.0.0.1:4222\"}`",
    );
    let yaml = "bus: {type: nats, url: \"nats://x:1\", tokn: a}\n";
    let err = error_of(yaml);
    assert!(err.message.contains("unknown field `tokn`"), "{err}");
    let yaml = concat!(
        "bus: {type: nats, url: \"nats://x:1\"}\n", // 1
        "modules:\n",                               // 2
        "  - module: demo\n",                       // 3
        "    name: a.b\n",                          // 4
        "    placement: nats\n",                    // 5
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.position.map(|p| p.line)),
        ("placement", Some(5)),
        "{err}"
    );
    assert!(err.message.contains("NATS subject token"), "{err}");
    let yaml = concat!(
        "modules:\n",            // 1
        "  - module: demo\n",    // 2
        "    placement: nats\n", // 3
    );
    assert!(error_of(yaml).message.contains("needs the NATS bus"));
    let yaml = concat!(
        "modules:\n",           // 1
        "  - module: remote\n", // 2
    );
    assert!(error_of(yaml).message.contains("give it `placement: nats`"));
    // An instance per dispatching thread is for modules glia builds.
    let yaml = concat!(
        "bus: {type: nats, url: \"nats://x:1\"}\n", // 1
        "modules:\n",                               // 2
        "  - module: remote\n",                     // 3
        "    name: r\n",                            // 4
        "    placement: nats\n",                    // 5
        "    instances: per_thread\n",              // 6
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.position.map(|p| p.line)),
        ("instances", Some(6)),
        "{err}"
    );
    assert!(err.message.contains("served by another program"), "{err}");
    let yaml = concat!(
        "modules:\n",                  // 1
        "  - module: demo\n",          // 2
        "    instances: per_thread\n", // 3
    );
    assert_eq!(
        module(&load(yaml), "demo").instances,
        glia_runtime::config::Instances::PerThread
    );
    // Without `instances:` a module that declares itself stateless runs per thread, any
    // other as one instance; the entry can always say `one`.
    let yaml = concat!(
        "modules:\n",                                              // 1
        "  - module: demo\n",                                      // 2
        "  - module: demo\n",                                      // 3
        "    name: single\n",                                      // 4
        "    instances: one\n",                                    // 5
        "  - module: event_censorer\n",                            // 6
        "    config: {endpoint: \"http://127.0.0.1:9/censor\"}\n", // 7
    );
    let config = load(yaml);
    assert_eq!(
        [
            module(&config, "demo").instances,
            module(&config, "single").instances,
            module(&config, "event_censorer").instances,
        ],
        [
            glia_runtime::config::Instances::PerThread,
            glia_runtime::config::Instances::One,
            glia_runtime::config::Instances::One,
        ]
    );
    let yaml = concat!(
        "modules:\n",            // 1
        "  - module: demo\n",    // 2
        "    instances: many\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(err.key, "instances", "{err}");
    assert!(err.message.contains("per_thread"), "{err}");
    let yaml = concat!(
        "modules:\n",           // 1
        "  - module: demo\n",   // 2
        "    priority: high\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        Some((0, "demo")),
        "priority",
        "invalid type: string \"high\", expected i32",
    );
}

#[test]
fn telemetry_settings_are_checked() {
    let yaml = concat!(
        "telemetry:\n",           // 1
        "  traces:\n",            // 2
        "    exporter: zipkin\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.position),
        (
            "telemetry.traces.exporter",
            Some(Position { line: 3, column: 5 })
        ),
        "{err}"
    );
    assert!(err.message.contains("unknown variant `zipkin`"), "{err}");
    let yaml = concat!(
        "telemetry:\n",              // 1
        "  traces:\n",               // 2
        "    protocol: http/json\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(err.key, "telemetry.traces.protocol", "{err}");
    assert!(err.message.contains("`grpc`"), "{err}");
    let yaml = concat!(
        "telemetry:\n",          // 1
        "  traces:\n",           // 2
        "    sample_ratio: 2\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        None,
        "telemetry.traces.sample_ratio",
        "must be between 0 and 1",
    );
    let yaml = concat!(
        "telemetry:\n",                   // 1
        "  traces:\n",                    // 2
        "    endpoint: collector:4317\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        None,
        "telemetry.traces.endpoint",
        "\"collector:4317\" is not an http:// or https:// URL",
    );
    let yaml = concat!(
        "telemetry:\n",                        // 1
        "  traces:\n",                         // 2
        "    tls:\n",                          // 3
        "      key_file: /etc/glia/key.pem\n", // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 7),
        None,
        "telemetry.traces.tls.key_file",
        "needs `cert_file:` (the key's certificate) beside it",
    );
    let yaml = concat!(
        "telemetry:\n",       // 1
        "  decision_log:\n",  // 2
        "    output: file\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (2, 3),
        None,
        "telemetry.decision_log.path",
        "output: file needs a `path:`",
    );
    let yaml = concat!(
        "telemetry:\n",       // 1
        "  decision_log:\n",  // 2
        "    output: nats\n", // 3
    );
    assert_error(
        &error_of(yaml),
        (3, 5),
        None,
        "telemetry.decision_log.output",
        "output: nats needs the NATS bus (`bus: {type: nats, url: ...}`)",
    );
    let yaml = concat!(
        "telemetry:\n",              // 1
        "  metrics: {enable: no}\n", // 2
    );
    let err = error_of(yaml);
    assert!(err.message.contains("unknown field `enable`"), "{err}");
    assert_eq!(err.position.map(|p| p.line), Some(2), "{err}");
    let cfg = load(concat!(
        "telemetry:\n",                                              // 1
        "  service_name: hs1\n",                                     // 2
        "  metrics: {enabled: false}\n",                             // 3
        "  decision_log: {output: stdout, include_content: true}\n", // 4
    ));
    assert_eq!(cfg.telemetry.service_name.as_deref(), Some("hs1"));
    assert!(!cfg.telemetry.metrics.enabled);
    assert!(cfg.telemetry.decision_log.include_content);
    assert!(
        load("modules: []\n").telemetry.metrics.enabled,
        "metrics are on by default"
    );
}

#[test]
fn flow_style_and_json_configs_point_at_the_key_on_its_line() {
    // JSON is YAML: everything is on line 1, and the column finds the key.
    let yaml = r#"{"modules": [{"module": "demo", "timeout": "fast"}]}"#;
    let err = error_of(yaml);
    let column = yaml.find("\"timeout\"").unwrap() as u32 + 1;
    assert_error(
        &err,
        (1, column),
        Some((0, "demo")),
        "timeout",
        "duration \"fast\" does not start with a number",
    );
}

#[test]
fn a_missing_config_file_names_the_file() {
    let path = TempFile::unused_path("missing.yaml");
    let err = match glia_runtime::app::load_file(&path, &glia_tests::registry()) {
        Ok(_) => panic!("a missing file loaded"),
        Err(e) => e,
    };
    let file = path.display().to_string();
    assert_eq!(err.file, file);
    assert_eq!(err.position, None);
    assert!(
        err.to_string()
            .starts_with(&format!("{file}: cannot read the config file: ")),
        "{err}"
    );
}

#[test]
fn errors_in_a_file_name_that_file() {
    let file = TempFile::new(
        "bad.yaml",
        concat!(
            "modules:\n",         // 1
            "  - module: demo\n", // 2
            "    bogus: 1\n",     // 3
        ),
    );
    let err = match glia_runtime::app::load_file(file.path(), &glia_tests::registry()) {
        Ok(_) => panic!("a bad file loaded"),
        Err(e) => e,
    };
    assert!(
        err.to_string().starts_with(&format!(
            "{}:3:5: modules[0] (demo): key `bogus`: unknown field `bogus`",
            file.path_str()
        )),
        "{err}"
    );
}

/// The HTTP server's limits: positive timeouts, a connection cap of at least one that fits
/// under the open-file limit.
#[test]
fn http_limits_are_checked() {
    for key in ["body_timeout", "header_timeout"] {
        let yaml = format!("listen: 127.0.0.1:0\n{key}: 0s\n");
        assert_error(
            &error_of(&yaml),
            (2, 1),
            None,
            key,
            "duration \"0s\" must be longer than 0",
        );
    }
    assert_error(
        &error_of("listen: 127.0.0.1:0\nmax_connections: 0\n"),
        (2, 1),
        None,
        "max_connections",
        "must be at least 1",
    );
    let err = error_of("listen: 127.0.0.1:0\nmax_connections: 4000000000\n");
    assert_eq!(err.position, Some(Position { line: 2, column: 1 }), "{err}");
    assert_eq!(err.key, "max_connections");
    assert!(
        err.message
            .starts_with("4000000000 connections need 4000000256 open files")
            && err.message.contains("open-file limit"),
        "{err}"
    );
    for per_address in [0, 65] {
        let yaml = format!(
            "listen: 127.0.0.1:0\nmax_connections: 64\nmax_connections_per_address: {per_address}\n"
        );
        assert_error(
            &error_of(&yaml),
            (3, 1),
            None,
            "max_connections_per_address",
            "must be between 1 and max_connections (64)",
        );
    }
    let cfg = load("body_timeout: 250ms\nheader_timeout: 2s\nmax_connections: 64\n");
    assert_eq!(cfg.body_timeout, Duration::from_millis(250));
    assert_eq!(cfg.header_timeout, Duration::from_secs(2));
    assert_eq!(cfg.max_connections, 64);
    assert_eq!(cfg.max_connections_per_address, 32);
    let cfg = load("max_connections: 64\nmax_connections_per_address: 64\n");
    assert_eq!(cfg.max_connections_per_address, 64);
    let cfg = load("modules: []\n");
    assert_eq!(cfg.body_timeout, config::DEFAULT_BODY_TIMEOUT);
    assert_eq!(cfg.header_timeout, config::DEFAULT_HEADER_TIMEOUT);
    assert_eq!(cfg.max_connections, config::DEFAULT_MAX_CONNECTIONS);
}

/// A `listen_unix` glia could not bind is refused at its key by the HTTP server's own check,
/// which `check-config` runs as `serve` does (it used to pass and fail `serve`): a directory
/// that does not exist, a path too long for a socket, a file that is not a socket.
#[test]
fn a_listen_unix_glia_cannot_bind_is_refused_at_its_key() {
    let dir = TempFile::unused_path("listen-unix");
    std::fs::create_dir_all(&dir).unwrap();
    let file = TempFile::new("not-a-socket", "x");
    let long = dir.join("s".repeat(108 - dir.as_os_str().len() - 1));
    for (path, says) in [
        (
            dir.join("absent/glia.sock"),
            "No such file or directory".to_owned(),
        ),
        (
            long.clone(),
            format!(
                "{} is 108 bytes long; a Unix socket's path can have at most 107",
                long.display()
            ),
        ),
        (
            file.path().to_owned(),
            "exists and is not a socket".to_owned(),
        ),
        (dir.clone(), "exists and is not a socket".to_owned()),
    ] {
        let yaml = format!("modules: []\nlisten_unix: {}\n", path.display());
        let err = error_of(&yaml);
        assert_eq!(err.position, Some(Position { line: 2, column: 1 }), "{err}");
        assert_eq!(err.key, "listen_unix", "{err}");
        assert!(err.message.contains(&says), "{err}");
    }
    let fine = dir.join("glia.sock");
    let cfg = load(&format!("modules: []\nlisten_unix: {}\n", fine.display()));
    assert_eq!(cfg.listen_unix.as_deref(), Some(fine.as_path()));
    let (ok, _, stderr) = check_config(&format!("modules: []\nlisten_unix: {}\n", long.display()));
    assert!(!ok && stderr.contains("key `listen_unix`"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The NATS ingress's bound is at least one request and at most a million (a semaphore's
/// permits are bounded).
#[test]
fn the_nats_ingress_bound_is_checked() {
    for bad in ["0", "1000001"] {
        let yaml = format!(
            "bus:\n  type: nats\n  url: nats://127.0.0.1:4222\n  ingress_max_in_flight: {bad}\n"
        );
        assert_error(
            &error_of(&yaml),
            (4, 3),
            None,
            "bus.ingress_max_in_flight",
            "must be between 1 and 1000000",
        );
    }
    let cfg =
        load("bus:\n  type: nats\n  url: nats://127.0.0.1:4222\n  ingress_max_in_flight: 7\n");
    let config::BusConfig::Nats(nats) = &cfg.bus else {
        panic!("a NATS bus")
    };
    assert_eq!(nats.ingress_limit(), 7);
}

/// The decision log's buffer is bounded (a huge one passed the check and panicked tokio at
/// start), and its path must not be empty (it passed the check and failed at start).
#[test]
fn decision_log_settings_that_failed_only_at_start_are_refused() {
    let yaml = concat!(
        "telemetry:\n",                      // 1
        "  decision_log:\n",                 // 2
        "    output: stdout\n",              // 3
        "    buffer: 2305843009213693952\n", // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 5),
        None,
        "telemetry.decision_log.buffer",
        "must be between 1 and 1000000",
    );
    let yaml = concat!(
        "telemetry:\n",       // 1
        "  decision_log:\n",  // 2
        "    output: file\n", // 3
        "    path: \"\"\n",   // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 5),
        None,
        "telemetry.decision_log.path",
        "must not be empty",
    );
    // A file that cannot be opened: at its key, with its line.
    let nowhere = TempFile::unused_path("no-such-dir").join("decisions.jsonl");
    let yaml = format!(
        concat!(
            "telemetry:\n",       // 1
            "  decision_log:\n",  // 2
            "    output: file\n", // 3
            "    path: {}\n",     // 4
        ),
        nowhere.display()
    );
    let err = error_of(&yaml);
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");
    assert_eq!(err.key, "telemetry.decision_log.path", "{err}");
    assert!(err.message.contains("does not exist"), "{err}");
}

/// What connecting to NATS would refuse is refused by the config check, at its key: a bad
/// NKey seed (without printing it), an unreadable or wrong TLS file, a credentials file that
/// is not one, half a user/password or certificate/key pair.
#[test]
fn nats_settings_that_failed_only_at_connect_are_refused() {
    let bus = |settings: &str| {
        format!(
            concat!(
                "listen: 127.0.0.1:0\n",          // 1
                "bus:\n",                         // 2
                "  type: nats\n",                 // 3
                "  url: nats://127.0.0.1:4222\n", // 4
                "{}",                             // 5...
            ),
            settings
        )
    };
    let err = error_of(&bus("  nkey_seed: SUANOTASEED\n"));
    assert_eq!(err.position, Some(Position { line: 5, column: 3 }), "{err}");
    assert_eq!(err.key, "bus.nkey_seed", "{err}");
    assert!(err.message.starts_with("not an NKey seed: "), "{err}");
    assert!(
        !err.message.contains("SUANOTASEED"),
        "the seed is a secret: {err}"
    );

    let missing = TempFile::unused_path("missing-ca.pem");
    let err = error_of(&bus(&format!(
        "  tls:\n    ca_file: {}\n",
        missing.display()
    )));
    assert_eq!(err.position, Some(Position { line: 6, column: 5 }), "{err}");
    assert_eq!(err.key, "bus.tls.ca_file", "{err}");
    assert!(
        err.message
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{err}"
    );
    let not_pem = TempFile::new("not-a-ca.pem", "hello\n");
    let err = error_of(&bus(&format!(
        "  tls:\n    ca_file: {}\n",
        not_pem.path_str()
    )));
    assert_eq!(err.key, "bus.tls.ca_file", "{err}");
    assert!(err.message.ends_with("no PEM certificate in it"), "{err}");
    let err = error_of(&bus(&format!(
        "  tls:\n    cert_file: {}\n",
        not_pem.path_str()
    )));
    assert_eq!(err.key, "bus.tls.cert_file", "{err}");
    assert!(err.message.contains("needs `key_file:`"), "{err}");

    let err = error_of(&bus(&format!(
        "  credentials_file: {}\n",
        not_pem.path_str()
    )));
    assert_eq!(err.position, Some(Position { line: 5, column: 3 }), "{err}");
    assert_eq!(err.key, "bus.credentials_file", "{err}");
    assert!(err.message.contains("not a NATS credentials file"), "{err}");
    let err = error_of(&bus("  credentials_file: /dev/zero\n"));
    assert_eq!(
        err.message, "cannot read /dev/zero: not a regular file",
        "{err}"
    );

    let err = error_of(&bus("  user: glia\n"));
    assert_eq!(
        (err.key.as_str(), err.message.as_str()),
        ("bus.user", "needs `password:` beside it"),
        "{err}"
    );
}

/// YAML errors name the file, not serde-saphyr's `<input>`, on one line.
#[test]
fn yaml_errors_name_the_file_on_one_line() {
    let yaml = concat!(
        "modules:\n",         // 1
        "  - module: demo\n", // 2
        "    timeout: 5s\n",  // 3
        "    timeout: 6s\n",  // 4
    );
    let file = TempFile::new("duplicate.yaml", yaml);
    let err = match glia_runtime::app::load_file(file.path(), &glia_tests::registry()) {
        Ok(_) => panic!("a duplicate key loaded"),
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:4:5: invalid YAML: ", file.path_str())),
        "{text}"
    );
    assert!(!text.contains("<input>"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("timeout"), "{text}");
    // Aliases to anchors that do not exist are syntax errors with a position too.
    let err = error_of("listen: *nowhere\n");
    assert!(err.position.is_some(), "{err}");
    assert!(!err.to_string().contains("<input>"), "{err}");
}

/// A config file is read as the token file is: a regular file, up to a cap.
#[test]
fn a_config_file_must_be_a_regular_file() {
    let err = match glia_runtime::app::load_file(
        std::path::Path::new("/dev/zero"),
        &glia_tests::registry(),
    ) {
        Ok(_) => panic!("/dev/zero loaded"),
        Err(e) => e,
    };
    assert_eq!(
        err.to_string(),
        "/dev/zero: cannot read the config file: not a regular file"
    );
}

/// Keys that a `<<:` merge key brings, and keys after one, are found where they are written.
#[test]
fn errors_around_merge_keys_point_at_the_key() {
    let yaml = concat!(
        "defaults: &shared\n",                     // 1
        "  timeout: 2s\n",                         // 2
        "modules:\n",                              // 3
        "  - <<: {module: demo, timeout: fast}\n", // 4
    );
    assert_error(
        &error_of(yaml),
        (4, 24),
        Some((0, "demo")),
        "timeout",
        "duration \"fast\" does not start with a number",
    );
    let yaml = concat!(
        "defaults: &shared\n",  // 1
        "  max_in_flight: 0\n", // 2
        "modules:\n",           // 3
        "  - module: demo\n",   // 4
    );
    assert_error(
        &error_of(yaml),
        (2, 3),
        None,
        "defaults.max_in_flight",
        "must be between 1 and 1048576",
    );
    let yaml = concat!(
        "defaults: &shared\n",            // 1
        "  timeout: 2s\n",                // 2
        "modules:\n",                     // 3
        "  - <<: *shared\n",              // 4
        "    module: demo\n",             // 5
        "    config:\n",                  // 6
        "      denied_users: [nobody]\n", // 7
    );
    assert_error(
        &error_of(yaml),
        (7, 22),
        Some((0, "demo")),
        "config.denied_users[0]",
        "bad config for module \"demo\": \"nobody\" is not a user id (expected @localpart:server)",
    );
    let yaml = concat!(
        "x-entry: &entry\n",    // 1
        "  module: demo\n",     // 2
        "  max_in_flight: 0\n", // 3
    );
    // (an unknown top-level key: anchors live inside known keys)
    assert_eq!(error_of(yaml).key, "x-entry");
    let yaml = concat!(
        "modules:\n",             // 1
        "  - &entry\n",           // 2
        "    module: demo\n",     // 3
        "    max_in_flight: 0\n", // 4
        "  - <<: *entry\n",       // 5
        "    name: second\n",     // 6
    );
    let err = error_of(yaml);
    // The first entry is wrong where it is written.
    assert_eq!(err.position, Some(Position { line: 4, column: 5 }), "{err}");
    let yaml = concat!(
        "modules:\n",             // 1
        "  - &entry\n",           // 2
        "    module: demo\n",     // 3
        "  - <<: *entry\n",       // 4
        "    name: second\n",     // 5
        "    max_in_flight: 0\n", // 6
    );
    assert_error(
        &error_of(yaml),
        (6, 5),
        Some((1, "second")),
        "max_in_flight",
        "must be between 1 and 1048576",
    );
}

// ----- valid configs -----------------------------------------------------------------------

const EXAMPLE_MODULES: [&str; 6] = [
    "demo",
    "list_spam_checker",
    "user_restrictions",
    "message_policy",
    "custom_presence_router",
    "account_expiry",
];

fn check_example(cfg: &GliaConfig) {
    let names: Vec<&str> = cfg.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, EXAMPLE_MODULES);
    assert_eq!(cfg.listen, "127.0.0.1:8787");
    assert_eq!(cfg.auth_token, None);
    assert_eq!(cfg.max_body_size, 1 << 20);
    assert_eq!(cfg.bus, BusConfig::Internal);
    assert_eq!(cfg.deadline, Duration::from_secs(10));
    for (index, m) in cfg.modules.iter().enumerate() {
        assert_eq!(m.index, index);
        assert_eq!(m.module, m.name);
        assert_eq!(m.priority, 0);
        assert_eq!(m.max_in_flight, 1024);
    }
    assert_eq!(
        module(cfg, "list_spam_checker").timeout,
        Duration::from_millis(250)
    );
    assert_eq!(module(cfg, "demo").timeout, Duration::from_secs(5));
    // Metrics on, nothing exported or logged unless the environment asks for spans.
    assert!(cfg.telemetry.metrics.enabled);
    assert_eq!(cfg.telemetry.traces.exporter, None);
    assert_eq!(
        cfg.telemetry.decision_log.output,
        glia_runtime::config::telemetry::DecisionOutput::None
    );
    let policy = &module(cfg, "message_policy").failure_policy;
    assert_eq!(
        policy.for_callback(Callback::CheckEventForSpam),
        FailurePolicy::Allow
    );
    assert_eq!(
        policy.for_callback(Callback::UserMayInvite),
        FailurePolicy::Error
    );
}

#[test]
fn the_embedded_example_loads() {
    let cfg = glia_runtime::app::load_str(
        config::EMBEDDED_CONFIG,
        config::EMBEDDED_NAME,
        &glia_modules::builtin_registry(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.source, config::EMBEDDED_NAME);
    check_example(&cfg);
}

#[test]
fn the_example_file_on_disk_loads_and_is_the_embedded_one() {
    let path = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/glia.example.yaml"
    ));
    let cfg = glia_runtime::app::load_file(path, &glia_modules::builtin_registry())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.source, path.display().to_string());
    check_example(&cfg);
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        config::EMBEDDED_CONFIG
    );
}

/// An empty file (or only comments, `~`, `{}`) is refused: it used to load with the defaults
/// and serve with no modules, allowing every callback, when the file was more likely never
/// written (or an empty volume was mounted over it) than meant. Saying `modules:` (even
/// `modules: []`) is a choice, and loads with the defaults (`check-config` and `serve` warn
/// that there are no modules).
#[test]
fn an_empty_config_is_refused_and_one_without_modules_loads_with_the_defaults() {
    for yaml in ["", "\n  \n", "# nothing yet\n", "~\n", "{}"] {
        let err = error_of(yaml);
        assert_eq!((err.file.as_str(), err.key.as_str()), ("test.yaml", ""));
        assert!(
            err.message
                .starts_with("the config is empty: list the modules under `modules:`"),
            "{yaml:?}: {err}"
        );
    }
    for yaml in ["modules:\n", "modules: []\n", "listen: 127.0.0.1:8787\n"] {
        let cfg = load(yaml);
        assert!(cfg.modules.is_empty(), "{yaml:?}");
        assert_eq!(cfg.auth_token, None);
        assert_eq!(cfg.max_body_size, DEFAULT_MAX_BODY_SIZE);
        assert_eq!(cfg.bus, BusConfig::Internal);
        assert_eq!(cfg.deadline, DEFAULT_DEADLINE);
        assert_eq!(cfg.source, "test.yaml");
    }
    assert_eq!(load("modules: []\n").listen, DEFAULT_LISTEN);
}

/// What `glia check-config FILE` prints and how it exits.
fn check_config(yaml: &str) -> (bool, String, String) {
    let file = TempFile::new("check-config.yaml", yaml);
    let output = std::process::Command::new(glia_tests::harness::glia_binary())
        .args(["check-config", &file.path_str()])
        .output()
        .expect("glia runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn check_config_and_serve_refuse_an_empty_file_and_warn_of_no_modules() {
    let (ok, _, stderr) = check_config("");
    assert!(!ok && stderr.contains("the config is empty"), "{stderr}");
    let empty = TempFile::new("empty.yaml", "");
    let served = std::process::Command::new(glia_tests::harness::glia_binary())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            &empty.path_str(),
        ])
        .output()
        .expect("glia runs");
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(
        !served.status.success() && stderr.contains("the config is empty"),
        "{stderr}"
    );
    let (ok, stdout, stderr) = check_config("modules: []\n");
    assert!(ok && stdout.contains("OK (0 modules)"), "{stdout}{stderr}");
    assert!(
        stderr.contains("warning: no modules are configured: glia allows every callback"),
        "{stderr}"
    );
    let (ok, _, stderr) = check_config("modules:\n  - module: demo\n");
    assert!(ok && !stderr.contains("warning"), "{stderr}");
}

#[test]
fn top_level_settings_are_read() {
    let cfg = load(concat!(
        "listen: 0.0.0.0:9000\n",
        "max_body_size: 64KiB\n",
        "deadline: 1.5s\n",
        "bus: internal\n",
        "modules: []\n",
    ));
    assert_eq!(cfg.listen, "0.0.0.0:9000");
    assert_eq!(cfg.max_body_size, 65536);
    assert_eq!(cfg.deadline, Duration::from_millis(1500));
    assert_eq!(load("max_body_size: 100\n").max_body_size, 100);
    assert_eq!(load("max_body_size: 2MiB\n").max_body_size, 2 << 20);
}

#[test]
fn module_entries_inherit_defaults_unless_they_set_their_own() {
    let cfg = load(concat!(
        "defaults:\n",
        "  timeout: 2s\n",
        "  max_in_flight: 7\n",
        "  failure_policy:\n",
        "    default: deny\n",
        "    user_may_invite: allow\n",
        "modules:\n",
        "  - module: demo\n",
        "    name: inherits\n",
        "  - module: demo\n",
        "    name: overrides\n",
        "    priority: 3\n",
        "    timeout: 250ms\n",
        "    max_in_flight: 2\n",
        "    failure_policy: error\n",
        "  - module: demo\n",
        "    name: partial\n",
        "    priority: -1\n",
        "    failure_policy:\n",
        "      check_event_for_spam: allow\n",
    ));

    let m = module(&cfg, "inherits");
    assert_eq!(m.priority, 0);
    assert_eq!(m.timeout, Duration::from_secs(2));
    assert_eq!(m.max_in_flight, 7);
    let p = &m.failure_policy;
    assert_eq!(
        p.for_callback(Callback::UserMayInvite),
        FailurePolicy::Allow
    );
    assert_eq!(p.for_callback(Callback::OnCreateRoom), FailurePolicy::Deny);
    assert_eq!(
        p.for_callback(Callback::CheckEventForSpam),
        FailurePolicy::Deny
    );
    assert_eq!(
        p.for_callback(Callback::GetUsersForStates),
        FailurePolicy::Deny
    );

    // Its own settings win; its own `default` covers every callback, including those the
    // defaults set one by one.
    let m = module(&cfg, "overrides");
    assert_eq!(m.priority, 3);
    assert_eq!(m.timeout, Duration::from_millis(250));
    assert_eq!(m.max_in_flight, 2);
    for &callback in Callback::ALL {
        assert_eq!(
            m.failure_policy.for_callback(callback),
            FailurePolicy::Error,
            "{callback}"
        );
    }

    // Per-callback settings of its own, the rest inherited.
    let m = module(&cfg, "partial");
    assert_eq!(m.priority, -1);
    assert_eq!(m.timeout, Duration::from_secs(2));
    assert_eq!(m.max_in_flight, 7);
    let p = &m.failure_policy;
    assert_eq!(
        p.for_callback(Callback::CheckEventForSpam),
        FailurePolicy::Allow
    );
    assert_eq!(
        p.for_callback(Callback::UserMayInvite),
        FailurePolicy::Allow
    );
    assert_eq!(
        p.for_callback(Callback::UserMayCreateRoom),
        FailurePolicy::Deny
    );
}

#[test]
fn without_defaults_modules_get_the_builtin_settings_and_synapse_policies() {
    let cfg = load(concat!(
        "modules:\n",
        "  - module: demo\n",
        "  - module: scripted\n",
        "    failure_policy:\n",
        "      default: allow\n",
        "      on_create_room: error\n",
    ));
    let m = module(&cfg, "demo");
    assert_eq!(m.priority, 0);
    assert_eq!(m.timeout, DEFAULT_TIMEOUT);
    assert_eq!(m.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
    let p = &m.failure_policy;
    // Synapse: spam checkers propagate, on_create_room denies, presence routers and auth
    // checkers log and continue.
    assert_eq!(
        p.for_callback(Callback::UserMayInvite),
        FailurePolicy::Error
    );
    assert_eq!(
        p.for_callback(Callback::CheckEventForSpam),
        FailurePolicy::Error
    );
    assert_eq!(p.for_callback(Callback::OnCreateRoom), FailurePolicy::Deny);
    assert_eq!(
        p.for_callback(Callback::GetUsersForStates),
        FailurePolicy::Allow
    );
    assert_eq!(p.for_callback(Callback::CheckAuth), FailurePolicy::Allow);

    let p = &module(&cfg, "scripted").failure_policy;
    assert_eq!(
        p.for_callback(Callback::UserMayInvite),
        FailurePolicy::Allow
    );
    assert_eq!(p.for_callback(Callback::OnCreateRoom), FailurePolicy::Error);
}

#[test]
fn a_single_policy_applies_to_every_callback() {
    let cfg = load(concat!(
        "defaults:\n",
        "  failure_policy: allow\n",
        "modules:\n",
        "  - module: demo\n",
    ));
    for &callback in Callback::ALL {
        assert_eq!(
            module(&cfg, "demo").failure_policy.for_callback(callback),
            FailurePolicy::Allow,
            "{callback}"
        );
    }
}

// ----- invoke, legacy sections, and Synapse's registration rules ----------------------------

#[test]
fn invoke_is_read_per_module_per_callback_and_from_the_defaults() {
    use glia_runtime::policy::Invoke;
    let cfg = load(concat!(
        "defaults:\n",                                                    // 1
        "  invoke: {check_event_for_spam: sequential}\n",                 // 2
        "modules:\n",                                                     // 3
        "  - module: demo\n",                                             // 4
        "  - module: user_restrictions\n",                                // 5
        "    invoke: sequential\n",                                       // 6
        "    config: {default_deny: [invite]}\n",                         // 7
        "  - module: message_policy\n",                                   // 8
        "    invoke: {default: sequential, user_may_invite: parallel}\n", // 9
        "    config: {max_body_length: 100}\n",                           // 10
    ));
    let invoke = |name: &str, callback: Callback| module(&cfg, name).invoke.for_callback(callback);
    assert_eq!(
        invoke("demo", Callback::CheckEventForSpam),
        Invoke::Sequential
    );
    assert_eq!(invoke("demo", Callback::UserMayInvite), Invoke::Parallel);
    assert_eq!(
        invoke("user_restrictions", Callback::UserMayInvite),
        Invoke::Sequential
    );
    assert_eq!(
        invoke("message_policy", Callback::UserMayInvite),
        Invoke::Parallel
    );
    assert_eq!(
        invoke("message_policy", Callback::IsUserExpired),
        Invoke::Sequential
    );

    let err = error_of(concat!(
        "modules:\n",               // 1
        "  - module: demo\n",       // 2
        "    invoke: eventually\n", // 3
    ));
    assert_eq!(err.position, Some(Position { line: 3, column: 5 }), "{err}");
    assert_eq!(err.key, "invoke", "{err}");
    assert!(
        err.message.contains("eventually") && err.message.contains("parallel or sequential"),
        "{err}"
    );
    assert_error(
        &error_of(concat!(
            "modules:\n",                            // 1
            "  - module: demo\n",                    // 2
            "    invoke: {user_may_dance: parallel}\n", // 3
        )),
        (3, 14),
        Some((0, "demo")),
        "invoke.user_may_dance",
        "unknown callback \"user_may_dance\" (use a callback name such as user_may_invite, or `default`)",
    );
}

#[test]
fn synapses_legacy_module_sections_are_refused_naming_the_replacement() {
    for (section, replacement) in [
        ("spam_checker", "list the module under `modules:`"),
        (
            "third_party_event_rules",
            "list the module under `modules:`",
        ),
        ("password_providers", "list each provider under `modules:`"),
        ("presence", "list the presence router under `modules:`"),
    ] {
        let yaml =
            format!("modules: []\n{section}:\n  module: my_module.Checker\n  config: {{}}\n");
        let err = error_of(&yaml);
        assert_eq!(err.position, Some(Position { line: 2, column: 1 }), "{err}");
        assert_eq!(err.key, section, "{err}");
        assert!(
            err.message.starts_with(&format!(
                "`{section}:` is Synapse's legacy way of loading modules and glia does not read it"
            )) && err.message.contains(replacement),
            "{err}"
        );
    }
}

#[test]
fn a_callbacks_list_synapse_would_refuse_is_refused() {
    let yaml = concat!(
        "bus: {type: nats, url: \"nats://127.0.0.1:4222\"}\n", // 1
        "modules:\n",                                          // 2
        "  - module: remote\n",                                // 3
        "    name: router\n",                                  // 4
        "    placement: nats\n",                               // 5
        "    callbacks: [get_interested_users]\n",             // 6
    );
    assert_error(
        &error_of(yaml),
        (6, 5),
        Some((0, "router")),
        "callbacks",
        "presence router callbacks must register neither or both of get_users_for_states and get_interested_users",
    );
}

#[test]
fn nats_servers_are_one_url_a_comma_separated_string_or_a_list() {
    let urls = |bus: &str| match load(&format!("bus: {bus}\n")).bus {
        BusConfig::Nats(nats) => nats.url.urls,
        other => panic!("not NATS: {other:?}"),
    };
    assert_eq!(urls("{type: nats, url: \"nats://a:1\"}"), ["nats://a:1"]);
    assert_eq!(
        urls("{type: nats, url: \"nats://a:1, nats://b:2,tls://c:3\"}"),
        ["nats://a:1", "nats://b:2", "tls://c:3"]
    );
    assert_eq!(
        urls("{type: nats, url: [\"nats://a:1\", \"b:2\"]}"),
        ["nats://a:1", "b:2"]
    );
    // The client's own parser checks each, at load: check-config refuses what serve would.
    let yaml = concat!(
        "bus:\n",                 // 1
        "  type: nats\n",         // 2
        "  url:\n",               // 3
        "    - nats://a:4222\n",  // 4
        "    - nats://b:99999\n", // 5
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.position.map(|p| (p.line, p.column))),
        ("bus.url[1]", Some((5, 7))),
        "{err}"
    );
    assert!(err.message.contains("\"nats://b:99999\""), "{err}");
    let yaml = concat!(
        "listen: 127.0.0.1:0\n",                                   // 1
        "bus: {type: nats, url: \"nats://a:1,nats://b:99999\"}\n", // 2
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.position.map(|p| p.line)),
        ("bus.url", Some(2)),
        "{err}"
    );
    assert!(err.message.contains("\"nats://b:99999\""), "{err}");
    for (bad, says) in [
        ("[]", "no NATS server"),
        ("\"nats://a:1,\"", "an empty NATS server URL"),
        ("\"ws://a:1\"", "nats:// or tls://"),
        (
            "4222",
            "expected a URL, a comma-separated list of URLs, or a YAML list",
        ),
    ] {
        let err = error_of(&format!("bus: {{type: nats, url: {bad}}}\n"));
        assert!(err.message.contains(says), "{bad}: {err}");
        assert!(err.position.is_some(), "{bad}: {err}");
    }
}

#[test]
fn a_python_module_needs_the_python_section() {
    let yaml = concat!(
        "modules:\n",                                  // 1
        "  - module: ldap_auth_provider.LdapModule\n", // 2
        "    name: ldap\n",                            // 3
    );
    assert_error(
        &error_of(yaml),
        (2, 5),
        Some((0, "ldap")),
        "module",
        "a Python module (a dotted path to its class) needs glia's `python:` section, with at least `server_name` (see docs/python-host.md)",
    );
}

#[test]
fn the_python_section_is_checked_key_by_key() {
    let yaml = concat!(
        "python:\n",                                   // 1
        "  interpreter: python3\n",                    // 2
        "modules:\n",                                  // 3
        "  - module: ldap_auth_provider.LdapModule\n", // 4
    );
    assert_error(
        &error_of(yaml),
        (1, 1),
        None,
        "python.server_name",
        "required: the homeserver's server name (as in homeserver.yaml), which Python modules read from their ModuleApi",
    );
    let yaml = concat!(
        "python:\n",                                                                    // 1
        "  server_name: example.com\n",                                                 // 2
        "  module_api: {url: \"http://127.0.0.1:8788\", secret: a, secret_file: /x}\n", // 3
        "modules:\n",                                                                   // 4
        "  - module: ldap_auth_provider.LdapModule\n",                                  // 5
    );
    assert_error(
        &error_of(yaml),
        (3, 57),
        None,
        "python.module_api.secret_file",
        "set secret or secret_file, not both",
    );
    let yaml = concat!(
        "python:\n",                    // 1
        "  server_name: example.com\n", // 2
        "  startup: 5s\n",              // 3
    );
    assert!(error_of(yaml).message.contains("unknown field `startup`"));
}

/// Every file a setting names goes through one bounded, regular-file-only reader:
/// `python.module_api.secret_file` pointing at /dev/zero or a FIFO is refused at once (it
/// used to hang the check, reading /dev/zero up to 4.6 GB).
#[test]
fn a_module_api_secret_file_must_be_a_small_regular_file() {
    let fifo_file = TempFile::fifo("secret-fifo");
    let fifo = fifo_file.path().to_owned();
    for path in ["/dev/zero".to_owned(), fifo.display().to_string()] {
        let yaml = format!(
            "python:\n  server_name: example.com\n  module_api: {{url: \"http://127.0.0.1:8788\", secret_file: {path}}}\nmodules:\n  - module: ldap_auth_provider.LdapModule\n"
        );
        let err = error_of(&yaml);
        assert_eq!(err.key, "python.module_api.secret_file", "{err}");
        assert_eq!(
            err.message,
            format!("cannot read {path}: not a regular file")
        );
    }
}

#[test]
fn a_python_module_on_nats_needs_a_name_that_is_a_subject_token() {
    let yaml = concat!(
        "bus: {type: nats, url: \"nats://127.0.0.1:4222\"}\n", // 1
        "python: {server_name: example.com}\n",                // 2
        "modules:\n",                                          // 3
        "  - module: ldap_auth_provider.LdapModule\n",         // 4
        "    placement: nats\n",                               // 5
    );
    let err = error_of(yaml);
    assert_eq!(err.key, "placement", "{err}");
    assert!(
        err.message.contains("cannot be a NATS subject token"),
        "{err}"
    );
}

#[test]
fn python_host_limits_are_checked_where_they_are_written() {
    let yaml = concat!(
        "python: {server_name: example.com, processes: 0}\n", // 1
        "modules:\n",                                         // 2
        "  - module: ldap_auth_provider.LdapModule\n",        // 3
    );
    let err = error_of(yaml);
    assert_eq!(
        (err.key.as_str(), err.message.as_str()),
        ("python.processes", "from 1 to 64"),
        "{err}"
    );
    let yaml = concat!(
        "python: {server_name: example.com, processes: 2}\n", // 1
        "modules:\n",                                         // 2
        "  - module: ldap_auth_provider.LdapModule\n",        // 3
        "    name: ldap\n",                                   // 4
        "    python: {max_requests: 0}\n",                    // 5
    );
    let err = error_of(yaml);
    assert_eq!(err.key, "python.max_requests", "{err}");
    assert!(err.message.starts_with("at least 1"), "{err}");
    let yaml = concat!(
        "modules:\n",                   // 1
        "  - module: demo\n",           // 2
        "    python: {processes: 2}\n", // 3
    );
    let err = error_of(yaml);
    assert_eq!(err.key, "python", "{err}");
    assert!(err.message.contains("for Python modules"), "{err}");
}
