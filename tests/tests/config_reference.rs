//! The configuration reference (`docs/configuration.md`) held to the config types: every key
//! the loader accepts is documented, every documented key is accepted, at the same place,
//! and the documented defaults are the constants the code uses. The loader is asked which
//! keys it takes by giving each section an unknown key: serde's refusal lists the keys that
//! section has (`deny_unknown_fields`), so nothing is listed by hand here but the sections.

use glia_runtime::config::{self, ModuleTypes};
use glia_runtime::supervision::RestartPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const REFERENCE: &str = include_str!("../../docs/configuration.md");
const UNKNOWN: &str = "zzz_not_a_key";

/// The reference's rows: key (as written between backticks) → default cell.
fn documented() -> BTreeMap<String, String> {
    let mut rows = BTreeMap::new();
    for line in REFERENCE.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| key | default | meaning |` splits into ["", key, default, meaning, ""].
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_owned();
        assert!(
            rows.insert(key.clone(), cells[2].to_owned()).is_none(),
            "{key} is documented twice"
        );
    }
    rows
}

/// Each section, and a config that puts the unknown key in it.
fn probes() -> Vec<(&'static str, String)> {
    let nats = "type: nats, url: 'nats://127.0.0.1:4222'";
    [
        ("", format!("{UNKNOWN}: 1")),
        ("bus", format!("bus: {{{nats}, {UNKNOWN}: 1}}")),
        ("bus.tls", format!("bus: {{{nats}, tls: {{{UNKNOWN}: 1}}}}")),
        ("telemetry", format!("telemetry: {{{UNKNOWN}: 1}}")),
        (
            "telemetry.traces",
            format!("telemetry: {{traces: {{{UNKNOWN}: 1}}}}"),
        ),
        (
            "telemetry.traces.tls",
            format!("telemetry: {{traces: {{tls: {{{UNKNOWN}: 1}}}}}}"),
        ),
        (
            "telemetry.metrics",
            format!("telemetry: {{metrics: {{{UNKNOWN}: 1}}}}"),
        ),
        (
            "telemetry.decision_log",
            format!("telemetry: {{decision_log: {{{UNKNOWN}: 1}}}}"),
        ),
        ("python", format!("python: {{{UNKNOWN}: 1}}")),
        (
            "python.module_api",
            format!("python: {{module_api: {{url: 'http://127.0.0.1:1', {UNKNOWN}: 1}}}}"),
        ),
        ("defaults", format!("defaults: {{{UNKNOWN}: 1}}")),
        (
            "defaults.restart",
            format!("defaults: {{restart: {{{UNKNOWN}: 1}}}}"),
        ),
        (
            "modules[]",
            format!("modules: [{{module: demo, {UNKNOWN}: 1}}]"),
        ),
        (
            "modules[]",
            format!("modules: [{{module: demo, restart: {{{UNKNOWN}: 1}}}}]"),
        ),
        (
            "modules[]",
            format!(
                "modules: [{{module: demo, rollout: {{percent: 1, by: sender, {UNKNOWN}: 1}}}}]"
            ),
        ),
        (
            "modules[]",
            format!("modules: [{{module: demo, python: {{{UNKNOWN}: 1}}}}]"),
        ),
    ]
    .into_iter()
    .enumerate()
    // The later `modules[]` probes are the module entry's `restart`, `rollout` and `python`.
    .map(|(i, (s, yaml))| match i {
        13 => ("modules[].restart", yaml),
        14 => ("modules[].rollout", yaml),
        15 => ("modules[].python", yaml),
        _ => (s, yaml),
    })
    .collect()
}

/// The keys the loader lists when refusing the unknown key in `yaml`.
fn accepted(yaml: &str) -> BTreeSet<String> {
    let registry = glia_modules::builtin_registry();
    let types = ModuleTypes {
        registry: &registry,
        python: None,
    };
    let error = match config::parse_str(yaml, "probe.yaml", &types) {
        Ok(_) => panic!("the loader took an unknown key: {yaml}"),
        Err(e) => e.to_string(),
    };
    let listed = error
        .split_once("expected")
        .unwrap_or_else(|| panic!("no key list in the refusal of {yaml}: {error}"))
        .1;
    listed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The documented keys directly under `section` (placeholders of per-callback maps aside).
fn documented_under(rows: &BTreeMap<String, String>, section: &str) -> BTreeSet<String> {
    rows.keys()
        .filter_map(|key| match section {
            "" => Some(key.as_str()),
            _ => key
                .strip_prefix(section)
                .and_then(|rest| rest.strip_prefix('.')),
        })
        .filter(|rest| !rest.contains('.') && !rest.starts_with('<'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_key_the_loader_takes_is_documented_and_every_documented_key_is_taken() {
    let rows = documented();
    let mut wrong = Vec::new();
    let probed: Vec<_> = probes();
    for (section, yaml) in &probed {
        let mut taken = accepted(yaml);
        if *section == "bus" {
            taken.insert("type".into()); // read by the bus's own deserializer, before the rest
        }
        let docs = documented_under(&rows, section);
        for key in taken.difference(&docs) {
            wrong.push(format!(
                "`{section}`: the loader takes `{key}`, the reference does not list it"
            ));
        }
        for key in docs.difference(&taken) {
            wrong.push(format!(
                "`{section}`: the reference lists `{key}`, the loader refuses it"
            ));
        }
    }
    // Every documented section is one of the probed ones (or a per-callback map).
    let sections: BTreeSet<&str> = probed.iter().map(|(s, _)| *s).collect();
    for key in rows.keys() {
        let parent = key.rsplit_once('.').map_or("", |(p, _)| p);
        let per_callback = ["failure_policy", "invoke", "mode"]
            .iter()
            .any(|map| parent.ends_with(map));
        if !sections.contains(parent) && !per_callback {
            wrong.push(format!(
                "`{key}`: its section `{parent}` is not checked here"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/configuration.md and the config types differ:\n{}",
        wrong.join("\n")
    );
}

/// A duration as the reference writes it: `10ms`, `5s`, `60s`.
fn duration(d: Duration) -> String {
    match d.subsec_millis() {
        0 => format!("`{}s`", d.as_secs()),
        _ => format!("`{}ms`", d.as_millis()),
    }
}

#[test]
fn the_documented_defaults_are_the_codes() {
    let rows = documented();
    let restart = RestartPolicy::default();
    let expected = [
        ("listen", format!("`{}`", config::DEFAULT_LISTEN)),
        (
            "max_body_size",
            format!("`{}MiB`", config::DEFAULT_MAX_BODY_SIZE >> 20),
        ),
        ("header_timeout", duration(config::DEFAULT_HEADER_TIMEOUT)),
        ("body_timeout", duration(config::DEFAULT_BODY_TIMEOUT)),
        (
            "max_connections",
            format!("`{}`", config::DEFAULT_MAX_CONNECTIONS),
        ),
        ("deadline", duration(config::DEFAULT_DEADLINE)),
        ("shutdown_grace", duration(config::DEFAULT_SHUTDOWN_GRACE)),
        ("log_format", "`text`".to_owned()),
        (
            "bus.ingress_max_in_flight",
            format!("`{}`", config::DEFAULT_INGRESS_MAX_IN_FLIGHT),
        ),
        (
            "telemetry.decision_log.subject",
            format!("`{}`", config::telemetry::DEFAULT_DECISION_SUBJECT),
        ),
        (
            "telemetry.decision_log.buffer",
            format!("`{}`", config::telemetry::DEFAULT_DECISION_BUFFER),
        ),
        (
            "python.interpreter",
            format!("`{}`", config::python::DEFAULT_INTERPRETER),
        ),
        (
            "python.startup_timeout",
            duration(config::python::DEFAULT_STARTUP_TIMEOUT),
        ),
        (
            "python.processes",
            format!("`{}`", config::python::DEFAULT_PROCESSES),
        ),
        ("defaults.timeout", duration(config::DEFAULT_TIMEOUT)),
        (
            "defaults.max_in_flight",
            format!("`{}`", config::DEFAULT_MAX_IN_FLIGHT),
        ),
        (
            "defaults.restart.intensity",
            format!("`{}`", restart.intensity),
        ),
        ("defaults.restart.period", duration(restart.period)),
        (
            "defaults.restart.backoff_min",
            duration(restart.backoff_min),
        ),
        (
            "defaults.restart.backoff_max",
            duration(restart.backoff_max),
        ),
        (
            "defaults.restart.random_factor",
            format!("`{}`", restart.random_factor),
        ),
        ("defaults.restart.stash", format!("`{}`", restart.stash)),
        ("defaults.restart.watchdog", duration(restart.watchdog)),
        ("defaults.restart.cooldown", duration(restart.cooldown)),
    ];
    let mut wrong = Vec::new();
    for (key, default) in expected {
        match rows.get(key) {
            None => wrong.push(format!("`{key}` is not documented")),
            Some(cell) if !cell.starts_with(&default) => wrong.push(format!(
                "`{key}`: the reference says {cell}, the code {default}"
            )),
            Some(_) => {}
        }
    }
    assert!(
        wrong.is_empty(),
        "defaults in docs/configuration.md differ from the code:\n{}",
        wrong.join("\n")
    );
}
