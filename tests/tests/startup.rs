//! Start-up rules: web resource paths glia refuses, the first module in config order winning
//! a path claimed twice, constructors that fail or panic, and Synapse's presence-router
//! pairing rule. A module defined here registers whatever its config says.

mod support;

use glia_bus_schema::requests::{GetInterestedUsers, GetUsersForStates};
use glia_bus_schema::InterestedUsers;
use glia_module_api::{
    from_config, ConfigError, Handler, Module, ModuleApi, ModuleError, ModuleRegistry,
    PresenceRouterCallbacks, WebHandler, WebResponse,
};
use glia_runtime::app::load_str;
use glia_runtime::config::GliaConfig;
use glia_runtime::host::ModuleState;
use glia_runtime::{Glia, StartError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::Served;

/// `webby`: serves each of `paths` (answering its own name and the path), and can fail or
/// panic in its constructor or register half a presence router. With `drop_probe`, dropping
/// the instance records that name.
struct Webby(Option<String>);

impl Drop for Webby {
    fn drop(&mut self) {
        if let Some(name) = self.0.take() {
            dropped().lock().unwrap().insert(name);
        }
    }
}

fn dropped() -> &'static Mutex<HashSet<String>> {
    static DROPPED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    DROPPED.get_or_init(Default::default)
}

/// Waits (at most ~10 s) until the instance with this drop probe has been dropped.
async fn assert_dropped(name: &str) {
    for _ in 0..500 {
        if dropped().lock().unwrap().contains(name) {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("module instance {name} was never dropped: its thread still runs");
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebbyConfig {
    #[serde(default)]
    paths: Vec<String>,
    /// Paths served with everything below them.
    #[serde(default)]
    trees: Vec<String>,
    /// The constructor returns this error.
    #[serde(default)]
    fail: Option<String>,
    /// The constructor panics with this message.
    #[serde(default)]
    panic: Option<String>,
    /// Registers a presence router with `both`, `users_for_states` or `interested_users`.
    #[serde(default)]
    presence: Option<String>,
    /// Recorded in `dropped()` when the instance is dropped.
    #[serde(default)]
    drop_probe: Option<String>,
}

impl Module for Webby {
    const NAME: &'static str = "webby";
    type Config = WebbyConfig;

    fn parse_config(config: &Value) -> Result<WebbyConfig, ConfigError> {
        from_config(config)
    }

    fn new(config: WebbyConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        if let Some(message) = config.panic {
            panic!("{message}");
        }
        if let Some(message) = config.fail {
            return Err(ModuleError::failed(message));
        }
        let users_for_states = || {
            Some(Handler::sync(
                |_: &GetUsersForStates| Ok(Default::default()),
            ))
        };
        let interested_users = || {
            Some(Handler::sync(|_: &GetInterestedUsers| {
                Ok(InterestedUsers::Users(Vec::new()))
            }))
        };
        match config.presence.as_deref() {
            None => {}
            Some("both") => api.register_presence_router_callbacks(PresenceRouterCallbacks {
                get_users_for_states: users_for_states(),
                get_interested_users: interested_users(),
            })?,
            Some("users_for_states") => {
                api.register_presence_router_callbacks(PresenceRouterCallbacks {
                    get_users_for_states: users_for_states(),
                    ..Default::default()
                })?
            }
            Some("interested_users") => {
                api.register_presence_router_callbacks(PresenceRouterCallbacks {
                    get_interested_users: interested_users(),
                    ..Default::default()
                })?
            }
            Some(other) => return Err(ModuleError::failed(format!("bad presence {other}"))),
        }
        let name = api.module_name().to_owned();
        let answer = |name: String| {
            WebHandler::sync(move |req| {
                WebResponse::json(200, &json!({"module": name, "path": req.path}))
            })
        };
        for path in config.paths {
            api.register_web_resource(path, answer(name.clone()));
        }
        for path in config.trees {
            api.register_web_resource_tree(path, answer(name.clone()));
        }
        Ok(Webby(config.drop_probe))
    }
}

fn registry() -> ModuleRegistry {
    glia_tests::registry().with::<Webby>()
}

/// A config (JSON is YAML) with these module entries.
fn config(modules: Value) -> GliaConfig {
    let yaml = json!({ "modules": modules }).to_string();
    load_str(&yaml, "test.yaml", &registry()).unwrap_or_else(|e| panic!("bad test config: {e}"))
}

fn webby(name: &str, config: Value) -> Value {
    json!({"module": "webby", "name": name, "config": config})
}

/// Starts glia from these module entries, expecting a start-up error.
async fn start_error(modules: Value) -> StartError {
    match Glia::start(config(modules)).await {
        Ok(glia) => panic!(
            "glia started with modules {:?}",
            glia.modules().iter().map(|m| &m.name).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

// ----- refused paths -----------------------------------------------------------------------

#[actix_rt::test]
async fn a_web_resource_under_matrix_is_refused() {
    for path in ["/_matrix/client/v3/login", "/_matrix"] {
        let err = start_error(json!([
            webby("fine", json!({"paths": ["/_synapse/client/fine"]})),
            webby("greedy", json!({"paths": ["/_synapse/client/ok", path]})),
        ]))
        .await;
        match &err {
            StartError::WebPath {
                index,
                name,
                path: refused,
                reason,
            } => {
                assert_eq!((*index, name.as_str()), (1, "greedy"));
                assert_eq!(refused, path);
                assert!(reason.contains("/_synapse/client/"), "{reason}");
            }
            other => panic!("expected a web path error, got {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            format!(
                "modules[1] (greedy): web resource {path:?}: paths under /_matrix belong to \
                 Synapse's APIs; register under /_synapse/client/ instead"
            )
        );
    }
}

#[actix_rt::test]
async fn web_resources_under_glia_health_or_without_a_slash_are_refused() {
    let cases = [
        (
            "/_glia/v1/modules",
            "paths under /_glia belong to glia's API",
        ),
        ("/_glia/mine", "paths under /_glia belong to glia's API"),
        ("/health", "/health is glia's health check"),
        ("_synapse/client/x", "a path must start with '/'"),
    ];
    for (path, reason) in cases {
        let err = start_error(json!([webby("w", json!({"paths": [path]}))])).await;
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("modules[0] (w): web resource {path:?}: {reason}")),
            "{message}"
        );
    }
}

#[actix_rt::test]
async fn paths_that_only_look_like_reserved_ones_are_served() {
    let glia = Arc::new(
        Glia::start(config(json!([webby(
            "w",
            json!({"paths": ["/_matrixish", "/healthz"], "trees": ["/_synapse/client/w"]})
        )])))
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let served = Served::start(glia.clone());
    for path in ["/_matrixish", "/healthz", "/_synapse/client/w/below"] {
        let reply = served.get(path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.json(), json!({"module": "w", "path": path}));
    }
    served.stop().await;
}

/// Synapse's resource tree: a resource answers its own path only (a JSON resource is not a
/// Twisted leaf), unless it is registered as a subtree; nested resources are reached through
/// their parents, percent-encoded segments are decoded, and a trailing slash is another path.
#[actix_rt::test]
async fn web_resources_match_paths_as_synapses_resource_tree_does() {
    let glia = Arc::new(
        Glia::start(config(json!([webby(
            "w",
            json!({"paths": ["/_synapse/client/w", "/_synapse/client/w/nested"], "trees": ["/_synapse/client/t"]})
        )])))
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let served = Served::start(glia.clone());
    for (path, served_by) in [
        ("/_synapse/client/w", Some("/_synapse/client/w")),
        (
            "/_synapse/client/w/nested",
            Some("/_synapse/client/w/nested"),
        ),
        ("/_synapse/client/%77", Some("/_synapse/client/%77")),
        ("/_synapse/client/w/", None),
        ("/_synapse/client/w/x", None),
        ("/_synapse/client/wx", None),
        (
            "/_synapse/client/t/anything/below",
            Some("/_synapse/client/t/anything/below"),
        ),
        ("/_synapse/client/t/", Some("/_synapse/client/t/")),
    ] {
        let reply = served.get(path).await;
        match served_by {
            Some(path) => {
                assert_eq!(reply.status, 200, "{path}: {}", reply.text());
                assert_eq!(reply.json()["path"], path);
            }
            None => {
                assert_eq!(reply.status, 404, "{path}: {}", reply.text());
                assert_eq!(reply.json()["errcode"], "M_UNRECOGNIZED", "{path}");
            }
        }
    }
    let listing = served.get("/_glia/v1/modules").await.json();
    assert_eq!(
        listing["modules"][0]["web_resource_subtrees"],
        json!(["/_synapse/client/t"])
    );
    served.stop().await;
}

// ----- a path claimed twice ----------------------------------------------------------------

#[actix_rt::test]
async fn the_first_module_in_config_order_wins_a_path_claimed_twice() {
    const SHARED: &str = "/_synapse/client/shared";
    // The second module has the higher priority: web resources go by config order anyway.
    let glia = Arc::new(
        Glia::start(config(json!([
            webby("first", json!({"paths": [SHARED, "/_synapse/client/first"]})),
            {
                "module": "webby", "name": "second", "priority": 10,
                "config": {"paths": ["/_synapse/client/second", SHARED]}
            },
        ])))
        .await
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let served = Served::start(glia.clone());

    let reply = served.get(SHARED).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"module": "first", "path": SHARED}));
    // The second module still serves its other path.
    let reply = served.get("/_synapse/client/second").await;
    assert_eq!(reply.json()["module"], "second");
    let reply = served.get("/_synapse/client/first").await;
    assert_eq!(reply.json()["module"], "first");

    // The listing shows the path under the first module only (in any order).
    let listing = served.get("/_glia/v1/modules").await;
    assert_eq!(listing.status, 200, "{}", listing.text());
    let modules = listing.json()["modules"].clone();
    let paths_listed = |m: &Value| -> Vec<String> {
        let mut paths: Vec<String> = serde_json::from_value(m["web_resources"].clone())
            .expect("web_resources is a list of paths");
        paths.sort();
        paths
    };
    assert_eq!(modules[0]["name"], "first");
    assert_eq!(
        paths_listed(&modules[0]),
        ["/_synapse/client/first", SHARED]
    );
    assert_eq!(modules[1]["name"], "second");
    assert_eq!(paths_listed(&modules[1]), ["/_synapse/client/second"]);

    let routes = glia.web_routes();
    let paths_of = |index| -> Vec<String> {
        routes
            .of_module(index)
            .iter()
            .map(|r| r.path.clone())
            .collect()
    };
    assert_eq!(paths_of(0), ["/_synapse/client/first", SHARED]);
    assert_eq!(paths_of(1), ["/_synapse/client/second"]);
    served.stop().await;
}

// ----- constructors ------------------------------------------------------------------------

#[actix_rt::test]
async fn a_constructor_error_fails_start_up_naming_the_module() {
    let err = start_error(json!([
        webby("good", json!({})),
        webby("broken", json!({"fail": "no database at db.example"})),
        webby("never-built", json!({})),
    ]))
    .await;
    match &err {
        StartError::Spawn(spawn) => {
            assert_eq!((spawn.index, spawn.name.as_str()), (1, "broken"));
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "cannot start modules[1] (broken): constructor failed: no database at db.example"
    );
}

#[actix_rt::test]
async fn a_constructor_panic_fails_start_up_naming_the_module() {
    let err = start_error(json!([webby(
        "explosive",
        json!({"panic": "kaboom in the constructor"})
    )]))
    .await;
    assert!(matches!(err, StartError::Spawn(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot start modules[0] (explosive): constructor panicked: kaboom in the constructor"
    );
}

#[actix_rt::test]
async fn a_failed_start_up_does_not_stop_the_next_one() {
    // The thread of a module whose constructor panicked is gone; glia starts fine afterwards.
    let _ = start_error(json!([webby("explosive", json!({"panic": "boom"}))])).await;
    let glia = Glia::start(config(json!([webby("w", json!({}))])))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(glia.modules()[0].state, ModuleState::Running);
}

/// A constructor failure stops the modules already started before glia gives up.
#[actix_rt::test]
async fn a_constructor_failure_stops_the_modules_already_started() {
    let err = start_error(json!([
        webby(
            "started-first",
            json!({"drop_probe": "stop-on-spawn-error"})
        ),
        webby("broken", json!({"fail": "no"})),
    ]))
    .await;
    assert!(matches!(err, StartError::Spawn(_)), "{err:?}");
    assert_dropped("stop-on-spawn-error").await;
}

/// A refused web resource path fails start-up after every module was built; those modules
/// must be stopped too, not left running on their threads.
#[actix_rt::test]
async fn a_refused_path_stops_the_modules_already_started() {
    let err = start_error(json!([
        webby("started-first", json!({"drop_probe": "stop-on-path-error"})),
        webby("greedy", json!({"paths": ["/_matrix/client/v3/login"]})),
    ]))
    .await;
    assert!(matches!(err, StartError::WebPath { .. }), "{err:?}");
    assert_dropped("stop-on-path-error").await;
}

// ----- presence routers --------------------------------------------------------------------

const PAIR_RULE: &str = "presence router callbacks must register neither or both of \
                         get_users_for_states and get_interested_users";

#[actix_rt::test]
async fn half_a_presence_router_fails_start_up() {
    for (half, index) in [("users_for_states", 0), ("interested_users", 1)] {
        let mut modules = vec![webby("half", json!({"presence": half}))];
        if index == 1 {
            modules.insert(0, webby("other", json!({})));
        }
        let err = start_error(Value::Array(modules)).await;
        assert!(matches!(err, StartError::Spawn(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot start modules[{index}] (half): constructor failed: {PAIR_RULE}")
        );
    }
}

#[actix_rt::test]
async fn both_presence_router_callbacks_start() {
    let glia = Glia::start(config(json!([webby(
        "router",
        json!({"presence": "both"})
    )])))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        glia.modules()[0].callbacks,
        ["get_users_for_states", "get_interested_users"]
    );
    let plans = glia.plan_listing();
    assert_eq!(
        plans["get_users_for_states"]["modules"][0]["name"],
        "router"
    );
    assert_eq!(
        plans["get_interested_users"]["modules"][0]["name"],
        "router"
    );
}
