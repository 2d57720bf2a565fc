//! Reloading the config without a restart, under continuous load through HTTP: a kept
//! module is the same instance with its state, a changed one is replaced, an added one
//! answers, a removed one is no longer asked, a bad config changes nothing and names the
//! file, line and key; every request in flight meanwhile is answered, each wholly by the old
//! modules or wholly by the new. In process (through the reload function SIGHUP and the
//! admin endpoint call), as a `glia serve` process (SIGHUP and `glia reload`), and for a
//! worker over a real nats-server.

mod support;

use glia_runtime::app::{ConfigLoader, ReloadError, StartOptions};
use glia_runtime::worker::Worker;
use glia_runtime::Glia;
use glia_tests::harness::glia_binary;
use glia_tests::nats::NatsServer;
use glia_tests::process::GliaProcess;
use glia_tests::{registry, TestGlia};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::TempFile;

/// One request of the load and its answer.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    done: Instant,
    status: u16,
    body: Value,
}

/// Clients that keep requests in flight until stopped.
struct Load {
    stop: Rc<Cell<bool>>,
    samples: Rc<RefCell<Vec<Sample>>>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` clients, each POSTing `body` to `url` again as soon as it is answered.
    fn start(url: String, body: Value, clients: usize) -> Load {
        let stop = Rc::new(Cell::new(false));
        let samples = Rc::new(RefCell::new(Vec::new()));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, samples, url, body) =
                    (stop.clone(), samples.clone(), url.clone(), body.to_string());
                actix_rt::spawn(async move {
                    let client = awc::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .finish();
                    while !stop.get() {
                        let sent = Instant::now();
                        let (status, bytes) = glia_tests::load::post(&client, &url, body.clone())
                            .await
                            .unwrap_or((0, Vec::new()));
                        samples.borrow_mut().push(Sample {
                            sent,
                            done: Instant::now(),
                            status,
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                        });
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            tasks,
        }
    }

    /// Answers so far.
    fn answered(&self) -> usize {
        self.samples.borrow().len()
    }

    /// Waits until `more` further requests have been answered.
    async fn more(&self, more: usize) {
        let target = self.answered() + more;
        let give_up = Instant::now() + Duration::from_secs(30);
        while self.answered() < target {
            assert!(Instant::now() < give_up, "the load stalled");
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the clients once their requests are answered; every sample.
    async fn finish(self) -> Vec<Sample> {
        self.stop.set(true);
        for task in self.tasks {
            task.await.expect("a load client ends");
        }
        self.samples.take()
    }
}

/// A counter module's entry (see `glia_tests::counter`).
fn counter(name: &str, label: &str, extra: Value) -> Value {
    let mut entry = json!({"module": "counter", "name": name,
                           "config": {"label": label, "delay_ms": 10}});
    if let (Some(entry), Some(extra)) = (entry.as_object_mut(), extra.as_object()) {
        entry.extend(extra.clone());
    }
    entry
}

fn config(modules: Value) -> String {
    json!({"deadline": "20s", "modules": modules}).to_string()
}

/// Reads the config at `path` as `glia serve` does, with the test modules.
fn loader(path: PathBuf) -> ConfigLoader {
    Arc::new(move || glia_runtime::app::load_file(&path, &registry()))
}

/// Starts glia from the config file `file`, reloadable from it, with its HTTP server.
async fn start(file: &TempFile) -> TestGlia {
    let config = glia_runtime::app::load_file(file.path(), &registry()).expect("config");
    let options = StartOptions {
        loader: Some(loader(file.path().to_owned())),
        ..StartOptions::default()
    };
    TestGlia::serve(Arc::new(
        Glia::start_with(config, options)
            .await
            .expect("glia starts"),
    ))
}

const CREATE_ROOM: &str = "/_glia/v1/callbacks/on_create_room";

fn create_room() -> Value {
    json!({"requester": {"user_id": "@u:hs"}, "request_content": {"name": "r"}, "is_requester_admin": false})
}

/// One module's part in an answer's chain.
#[derive(Debug, Clone, PartialEq)]
struct Part {
    module: String,
    label: String,
    instance: u64,
    n: u64,
}

/// The chain of an answer, which must be a 200 allow.
fn chain(sample: &Sample) -> Vec<Part> {
    assert_eq!(sample.status, 200, "{sample:?}");
    assert_eq!(sample.body["decision"], "allow", "{sample:?}");
    sample.body["request_content"]["chain"]
        .as_array()
        .unwrap_or_else(|| panic!("no chain: {sample:?}"))
        .iter()
        .map(|p| Part {
            module: p["module"].as_str().unwrap().to_owned(),
            label: p["label"].as_str().unwrap().to_owned(),
            instance: p["instance"].as_u64().unwrap(),
            n: p["n"].as_u64().unwrap(),
        })
        .collect()
}

/// `(module, label)` of each part.
fn shape(parts: &[Part]) -> Vec<(String, String)> {
    parts
        .iter()
        .map(|p| (p.module.clone(), p.label.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(m, l)| (m.to_string(), l.to_string()))
        .collect()
}

/// The parts of `module` across `chains`.
fn parts_of<'a>(chains: &'a [Vec<Part>], module: &'a str) -> impl Iterator<Item = &'a Part> {
    chains.iter().flatten().filter(move |p| p.module == module)
}

/// The instances `module` answered from.
fn instances(chains: &[Vec<Part>], module: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = parts_of(chains, module).map(|p| p.instance).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One instance's invocation counts are exactly 1..=N: its state was never reset and no
/// answer is missing.
fn assert_counts_continue(chains: &[Vec<Part>], module: &str, instance: u64) {
    let mut ns: Vec<u64> = parts_of(chains, module)
        .filter(|p| p.instance == instance)
        .map(|p| p.n)
        .collect();
    ns.sort_unstable();
    let expected: Vec<u64> = (1..=ns.len() as u64).collect();
    assert_eq!(ns, expected, "{module} instance {instance} counts");
}

/// A metric's value in `/metrics`.
async fn metric(g: &TestGlia, series: &str) -> Option<f64> {
    let text = support::send("GET", &format!("{}/metrics", g.base_url), &[], None)
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[actix_rt::test]
async fn a_reload_under_load_keeps_replaces_adds_and_removes_modules() {
    let file = TempFile::new(
        "reload.yaml",
        &config(json!([
            counter("keep", "a", json!({})),
            counter("change", "a", json!({})),
            counter("gone", "a", json!({})),
        ])),
    );
    let g = start(&file).await;
    let (keep, change, gone) = (
        g.glia.status_of("keep").unwrap(),
        g.glia.status_of("change").unwrap(),
        g.glia.status_of("gone").unwrap(),
    );
    let load = Load::start(format!("{}{CREATE_ROOM}", g.base_url), create_room(), 16);
    load.more(100).await;

    std::fs::write(
        file.path(),
        config(json!([
            counter("keep", "a", json!({})),
            counter("change", "b", json!({})),
            counter("new", "b", json!({})),
        ])),
    )
    .unwrap();
    let reload_began = Instant::now();
    let report = g.glia.reload().await.expect("the reload is applied");
    let reloaded = Instant::now();
    load.more(100).await;
    let samples = load.finish().await;

    assert_eq!(report.kept, ["keep"]);
    assert_eq!(report.replaced, ["change"]);
    assert_eq!(report.started, ["new"]);
    assert_eq!(report.stopped, ["gone"]);
    assert!(report.needs_restart.is_empty(), "{report:?}");

    let old = pairs(&[("keep", "a"), ("change", "a"), ("gone", "a")]);
    let new = pairs(&[("keep", "a"), ("change", "b"), ("new", "b")]);
    let chains: Vec<Vec<Part>> = samples.iter().map(chain).collect();
    let (mut olds, mut news) = (0, 0);
    for (sample, parts) in samples.iter().zip(&chains) {
        // Each request is answered wholly by the old modules or wholly by the new.
        let shape = shape(parts);
        if shape == old {
            olds += 1;
            assert!(
                sample.sent < reloaded,
                "an old answer to a request sent after the reload"
            );
        } else if shape == new {
            news += 1;
            assert!(sample.done > reload_began, "a new answer before the reload");
        } else {
            panic!("a mixed answer: {parts:?}");
        }
    }
    assert!(olds >= 100 && news >= 100, "{olds} old, {news} new answers");

    // Kept: one instance throughout, its state intact (its count went on, never reset).
    let kept = instances(&chains, "keep");
    assert_eq!(kept.len(), 1, "keep answered from {kept:?}");
    assert_counts_continue(&chains, "keep", kept[0]);
    assert!(Arc::ptr_eq(&g.glia.status_of("keep").unwrap(), &keep));
    assert_eq!(keep.restarts(), 0);
    // Replaced: label a from one instance, label b from another, each counting from 1.
    let changed = instances(&chains, "change");
    assert_eq!(changed.len(), 2, "change answered from {changed:?}");
    for id in &changed {
        assert_counts_continue(&chains, "change", *id);
    }
    assert_eq!(
        change.state().as_str(),
        "stopped",
        "the old instance stopped"
    );
    assert_eq!(
        gone.state().as_str(),
        "stopped",
        "the removed module stopped"
    );
    assert!(g.glia.status_of("gone").is_none());
    assert_eq!(g.glia.status_of("new").unwrap().state().as_str(), "running");
    assert_eq!(
        metric(&g, "glia_config_reloads_total{result=\"applied\"}").await,
        Some(1.0)
    );
    let listed = g.get("/_glia/v1/modules", None).await.1;
    let names: Vec<&str> = listed["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "change", "new"]);
}

/// The line of `file` that contains `needle` (1-based).
fn line_of(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .expect("the needle is in the file")
        + 1
}

const GOOD_YAML: &str = "\
deadline: 20s
modules:
  - module: counter
    name: keep
    config: {label: a, delay_ms: 10}
  - module: counter
    name: other
    config: {label: a, delay_ms: 10}
";

#[actix_rt::test]
async fn a_bad_config_changes_nothing_and_names_the_file_line_and_key() {
    let file = TempFile::new("bad.yaml", GOOD_YAML);
    let g = start(&file).await;
    let keep = g.glia.status_of("keep").unwrap();
    let load = Load::start(format!("{}{CREATE_ROOM}", g.base_url), create_room(), 16);
    load.more(50).await;

    // The other module changed, a module added, and an error in the added one.
    let bad = GOOD_YAML.replace(
        "label: a, delay_ms: 10}\n  - module: counter\n    name: other",
        "label: a, delay_ms: 10}\n  - module: counter\n    name: other2",
    )
        + "  - module: counter\n    name: broken\n    timeout: soon\n    config: {label: b}\n";
    std::fs::write(file.path(), &bad).unwrap();
    let line = line_of(file.path(), "timeout: soon");
    let error = match g.glia.reload().await {
        Err(ReloadError::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(error.file, file.path_str());
    assert_eq!(
        error.position.map(|p| p.line as usize),
        Some(line),
        "{error}"
    );
    assert_eq!(error.key, "timeout", "{error}");
    assert_eq!(error.module, Some((2, "broken".to_owned())), "{error}");
    load.more(50).await;

    // The admin endpoint says the same.
    let (status, body) = g.post("/_glia/v1/admin/reload", "", None).await;
    assert_eq!(status, 400, "{body}");
    let said = body["error"].as_str().unwrap();
    assert!(
        said.contains(&format!("{}:{line}:", file.path_str())) && said.contains("key `timeout`"),
        "{said}"
    );
    assert!(said.contains("nothing changed"), "{said}");
    load.more(50).await;
    let samples = load.finish().await;

    // Nothing changed: the same modules answered every request, the same instances.
    let chains: Vec<Vec<Part>> = samples.iter().map(chain).collect();
    let before = pairs(&[("keep", "a"), ("other", "a")]);
    for parts in &chains {
        assert_eq!(shape(parts), before);
    }
    for module in ["keep", "other"] {
        let ids = instances(&chains, module);
        assert_eq!(ids.len(), 1, "{module} answered from {ids:?}");
        assert_counts_continue(&chains, module, ids[0]);
    }
    assert!(Arc::ptr_eq(&g.glia.status_of("keep").unwrap(), &keep));
    assert!(g.glia.status_of("other2").is_none());
    assert_eq!(
        metric(&g, "glia_config_reloads_total{result=\"refused\"}").await,
        Some(2.0)
    );
    assert_eq!(
        metric(&g, "glia_config_reloads_total{result=\"applied\"}").await,
        Some(0.0)
    );
}

/// What a module's instances share (`ModuleApi::shared`) lives as long as its entry: a kept
/// module keeps it across a reload, a changed one starts afresh.
#[actix_rt::test]
async fn a_kept_module_keeps_its_shared_state_and_a_changed_one_starts_afresh() {
    let entry = |timeout: &str| {
        json!([{"module": "crashy", "name": "shared", "instances": "per_thread",
                "timeout": timeout, "config": {"key": "reload-shared"}}])
    };
    let file = TempFile::new("shared.yaml", &config(entry("5s")));
    let g = start(&file).await;
    let count = || glia_tests::crashy::errcode_over_http(&g, "@count:hs");
    assert_eq!(count().await, "M_COUNT_1");
    let report = g.glia.reload().await.expect("an unchanged file reloads");
    assert_eq!(report.kept, ["shared"]);
    assert_eq!(count().await, "M_COUNT_2");
    std::fs::write(file.path(), config(entry("6s"))).unwrap();
    let report = g.glia.reload().await.expect("the reload is applied");
    assert_eq!(report.replaced, ["shared"]);
    assert_eq!(count().await, "M_COUNT_1");
}

/// A lasting `is_user_expired` reply names the generation of the routing it was decided
/// under, and every callback response the generation in force: a reload, even of an
/// unchanged file, starts a new one, so a bridge stops reusing what it kept from before (an
/// expiry date moved by the reload takes effect at once).
#[actix_rt::test]
async fn a_reload_starts_a_new_generation_that_ends_lasting_replies() {
    let entry = |expires: i64| json!([{"module": "account_expiry", "config": {"expiry": {"@carol:hs": expires}}}]);
    let file = TempFile::new("generation.yaml", &config(entry(4_102_444_800_000)));
    let g = start(&file).await;
    let ask = || async {
        let reply = support::send(
            "POST",
            &format!("{}/_glia/v1/callbacks/is_user_expired", g.base_url),
            &[("content-type", "application/json")],
            Some(br#"{"user_id": "@carol:hs"}"#),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let header = reply.header("glia-generation").map(str::to_owned);
        (
            reply.json(),
            header.expect("every callback reply names its generation"),
        )
    };
    let (lasting, first) = ask().await;
    assert_eq!(lasting["expired"], json!(false));
    assert_eq!(lasting["generation"], json!(first), "{lasting}");
    assert_eq!(ask().await.1, first, "no reload, same generation");

    g.glia.reload().await.expect("an unchanged file reloads");
    let (_, after_same) = ask().await;
    assert_ne!(after_same, first);
    std::fs::write(file.path(), config(entry(0))).unwrap();
    g.glia.reload().await.expect("the reload is applied");
    let (expired, now) = ask().await;
    assert_eq!(expired["expired"], json!(true), "{expired}");
    assert_ne!(now, after_same);
    assert_eq!(expired["generation"], json!(now), "{expired}");
}

#[actix_rt::test]
async fn the_auth_token_applies_live_and_other_settings_are_reported_as_needing_a_restart() {
    let file = TempFile::new(
        "token.yaml",
        &json!({"auth_token": "one", "modules": [counter("keep", "a", json!({}))]}).to_string(),
    );
    let g = start(&file).await;
    assert_eq!(g.get("/_glia/v1/modules", Some("one")).await.0, 200);
    std::fs::write(
        file.path(),
        json!({"auth_token": "two", "max_body_size": "2MiB", "modules": [counter("keep", "a", json!({}))]}).to_string(),
    )
    .unwrap();
    let (status, report) = g.post("/_glia/v1/admin/reload", "", Some("one")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["kept"], json!(["keep"]));
    assert_eq!(report["needs_restart"], json!(["max_body_size"]));
    assert_eq!(g.get("/_glia/v1/modules", Some("one")).await.0, 403);
    assert_eq!(g.get("/_glia/v1/modules", Some("two")).await.0, 200);
    // The endpoint is behind the token too.
    assert_eq!(g.post("/_glia/v1/admin/reload", "", None).await.0, 401);
}

#[actix_rt::test]
async fn a_bus_change_is_refused_as_needing_a_restart() {
    let modules = json!([counter("keep", "a", json!({}))]);
    let file = TempFile::new("bus.yaml", &json!({"modules": modules}).to_string());
    let g = start(&file).await;
    let keep = g.glia.status_of("keep").unwrap();
    std::fs::write(
        file.path(),
        json!({"bus": {"type": "nats", "url": "nats://127.0.0.1:1"}, "modules": modules})
            .to_string(),
    )
    .unwrap();
    let (status, body) = g.post("/_glia/v1/admin/reload", "", None).await;
    assert_eq!(status, 400, "{body}");
    let said = body["error"].as_str().unwrap();
    assert!(
        said.contains("the bus changed") && said.contains("needs a restart"),
        "{said}"
    );
    assert!(Arc::ptr_eq(&g.glia.status_of("keep").unwrap(), &keep));
    assert_eq!(g.glia.bus_connected(), None, "still on the internal bus");
}

const DEMO_YAML: &str = "\
deadline: 20s
modules:
  - module: demo
    config:
      denied_users: [\"@a:hs\"]
";

/// `glia reload --url URL`: its exit status, standard output and error.
fn glia_reload(url: &str) -> (bool, String, String) {
    let out = std::process::Command::new(glia_binary())
        .args(["reload", "--url", url])
        .output()
        .expect("glia reload runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[actix_rt::test]
async fn sighup_and_glia_reload_reload_a_running_glia_serve() {
    let file = TempFile::new("serve.yaml", DEMO_YAML);
    let (mut process, listen) = GliaProcess::serve(file.path(), &[], &[], false).await;
    let url = format!("http://{listen}");
    let ask = json!({"user_id": "@a:hs", "room_config": {}});
    let load = Load::start(
        format!("{url}/_glia/v1/callbacks/user_may_create_room"),
        ask,
        8,
    );
    load.more(50).await;

    // SIGHUP: the demo module's config changed, so it is replaced; @a is no longer denied.
    std::fs::write(file.path(), DEMO_YAML.replace("@a:hs", "@b:hs")).unwrap();
    process.signal("HUP");
    process.logged("config reloaded").await;
    let reloaded = Instant::now();
    load.more(50).await;
    let samples = load.finish().await;
    let (mut denied, mut allowed) = (0, 0);
    for s in &samples {
        assert_eq!(s.status, 200, "{s:?}");
        match s.body["decision"].as_str() {
            Some("deny") => {
                assert_eq!(s.body["module"], "demo", "{s:?}");
                assert_eq!(s.body["errcode"], "M_FORBIDDEN", "{s:?}");
                assert!(s.sent < reloaded, "denied after the reload: {s:?}");
                denied += 1;
            }
            Some("allow") => allowed += 1,
            _ => panic!("{s:?}"),
        }
    }
    assert!(
        denied >= 50 && allowed >= 50,
        "{denied} denied, {allowed} allowed"
    );

    // `glia reload`: a module added; the command prints what changed.
    std::fs::write(
        file.path(),
        DEMO_YAML.replace("@a:hs", "@b:hs")
            + "  - module: list_spam_checker\n    config: {evil_users: [\"@e:hs\"]}\n",
    )
    .unwrap();
    let (ok, out, err) = glia_reload(&url);
    assert!(ok, "{out}{err}");
    assert!(out.contains("started:  list_spam_checker"), "{out}");
    assert!(out.contains("kept:     demo"), "{out}");

    // A bad config: refused, non-zero, the file, line and key named.
    std::fs::write(
        file.path(),
        DEMO_YAML.replace("config:", "timeout: soon\n    config:"),
    )
    .unwrap();
    let line = line_of(file.path(), "timeout: soon");
    let (ok, out, err) = glia_reload(&url);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("{}:{line}:", file.path_str())) && err.contains("key `timeout`"),
        "{err}"
    );
    let metrics = support::send("GET", &format!("{url}/metrics"), &[], None)
        .await
        .text();
    assert!(
        metrics.contains("glia_config_reloads_total{result=\"applied\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("glia_config_reloads_total{result=\"refused\"} 1"),
        "{metrics}"
    );
    // Still serving the last good config: list_spam_checker is planned.
    let modules = support::send("GET", &format!("{url}/_glia/v1/modules"), &[], None)
        .await
        .json();
    assert_eq!(modules["modules"].as_array().unwrap().len(), 2, "{modules}");
    let (_, log, _) = process.terminate_with_log();
    assert!(
        log.contains("config reload refused; nothing changed"),
        "{log}"
    );
}

#[actix_rt::test]
async fn a_worker_reload_replaces_and_adds_its_modules_over_nats() {
    let nats = NatsServer::start();
    let on_nats = json!({"placement": "nats", "timeout": "20s"});
    let yaml = |modules: Value| {
        json!({"bus": {"type": "nats", "url": nats.url()}, "deadline": "20s", "modules": modules})
            .to_string()
    };
    let file = TempFile::new(
        "worker.yaml",
        &yaml(json!([
            counter("keep", "a", on_nats.clone()),
            counter("change", "a", on_nats.clone()),
        ])),
    );
    let first = glia_runtime::app::load_file(file.path(), &registry()).unwrap();
    let worker = Worker::start_with(&first, Some(loader(file.path().to_owned())))
        .await
        .expect("the worker starts");
    let g = start(&file).await;
    let load = Load::start(format!("{}{CREATE_ROOM}", g.base_url), create_room(), 8);
    load.more(50).await;

    std::fs::write(
        file.path(),
        yaml(json!([
            counter("keep", "a", on_nats.clone()),
            counter("change", "b", on_nats.clone()),
            counter("new", "b", on_nats.clone()),
        ])),
    )
    .unwrap();
    let report = worker.reload().await.expect("the worker reloads");
    assert_eq!(report.kept, ["keep"]);
    assert_eq!(report.replaced, ["change"]);
    assert_eq!(report.started, ["new"]);
    let worker_reloaded = Instant::now();
    load.more(50).await;
    // The coordinator plans the new module once it reloads too.
    let report = g.glia.reload().await.expect("the coordinator reloads");
    assert_eq!(report.started, ["new"]);
    let reloaded = Instant::now();
    load.more(50).await;
    let samples = load.finish().await;

    let before = pairs(&[("keep", "a"), ("change", "a")]);
    let between = pairs(&[("keep", "a"), ("change", "b")]);
    let after = pairs(&[("keep", "a"), ("change", "b"), ("new", "b")]);
    let chains: Vec<Vec<Part>> = samples.iter().map(chain).collect();
    let mut seen = [0; 3];
    for (sample, parts) in samples.iter().zip(&chains) {
        let shape = shape(parts);
        let i = [&before, &between, &after]
            .iter()
            .position(|s| **s == shape)
            .unwrap_or_else(|| panic!("an unexpected answer: {parts:?}"));
        if i == 0 {
            assert!(sample.sent < worker_reloaded, "{parts:?}");
        }
        if i < 2 {
            assert!(sample.sent < reloaded, "{parts:?}");
        }
        seen[i] += 1;
    }
    assert!(seen[0] > 0 && seen[2] >= 50, "{seen:?}");
    let kept = instances(&chains, "keep");
    assert_eq!(kept.len(), 1, "keep answered from {kept:?}");
    assert_counts_continue(&chains, "keep", kept[0]);
    let changed = instances(&chains, "change");
    assert_eq!(changed.len(), 2, "change answered from {changed:?}");
    for id in changed {
        assert_counts_continue(&chains, "change", id);
    }
    worker.shutdown(Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn sighup_reloads_a_glia_worker_process() {
    let nats = NatsServer::start();
    let yaml = |w1_denies: &str, with_w2: bool| {
        let demo = |name: &str, denies: &str| {
            json!({"module": "demo", "name": name, "placement": "nats",
                   "config": {"denied_users": [denies]}})
        };
        let mut modules = vec![demo("w1", w1_denies)];
        if with_w2 {
            modules.push(demo("w2", "@z:hs"));
        }
        json!({"bus": {"type": "nats", "url": nats.url()}, "deadline": "20s", "modules": modules})
            .to_string()
    };
    let file = TempFile::new("worker-process.yaml", &yaml("@a:hs", true));
    let mut worker = GliaProcess::worker(file.path(), &[], false);
    worker.logged("glia worker serving over NATS").await;
    let g = start(&file).await;
    let ask = json!({"user_id": "@a:hs", "room_config": {}});
    let load = Load::start(
        format!("{}/_glia/v1/callbacks/user_may_create_room", g.base_url),
        ask,
        8,
    );
    load.more(50).await;

    // w1 changes (no longer denies @a) and w2 goes: the coordinator stops planning w2 first,
    // then the worker replaces w1 and stops w2 on SIGHUP.
    std::fs::write(file.path(), yaml("@b:hs", false)).unwrap();
    let report = g.glia.reload().await.expect("the coordinator reloads");
    assert_eq!(
        (report.replaced, report.stopped),
        (vec!["w1".to_owned()], vec!["w2".to_owned()])
    );
    worker.signal("HUP");
    worker.logged("worker config reloaded").await;
    let reloaded = Instant::now();
    load.more(50).await;
    let samples = load.finish().await;
    let mut allowed_after = 0;
    for s in &samples {
        assert_eq!(s.status, 200, "{s:?}");
        match s.body["decision"].as_str() {
            Some("deny") => {
                assert_eq!(s.body["module"], "w1", "{s:?}");
                assert_eq!(s.body["errcode"], "M_FORBIDDEN", "{s:?}");
                assert!(s.sent < reloaded, "denied after the worker reloaded: {s:?}");
            }
            Some("allow") if s.sent > reloaded => allowed_after += 1,
            Some("allow") => {}
            _ => panic!("{s:?}"),
        }
    }
    assert!(
        allowed_after >= 40,
        "{allowed_after} allowed after the reload"
    );
    let (_, log, _) = worker.terminate_with_log();
    let log = without_colours(&log);
    assert!(
        log.contains(r#"replaced=["w1"]"#) && log.contains(r#"stopped=["w2"]"#),
        "{log}"
    );
}

/// `log` without its ANSI colour sequences.
fn without_colours(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `glia reload --token-file` reads through the bounded reader: /dev/zero is refused at once
/// (it used to be read until glia held gigabytes), and so is a FIFO (it used to wait for a
/// writer).
#[test]
fn glia_reload_refuses_a_token_file_that_is_not_a_small_regular_file() {
    let fifo_file = TempFile::fifo("reload-token-fifo");
    let fifo = fifo_file.path().to_owned();
    for path in ["/dev/zero".to_owned(), fifo.display().to_string()] {
        let out = std::process::Command::new(glia_binary())
            .args([
                "reload",
                "--url",
                "http://127.0.0.1:9",
                "--token-file",
                &path,
            ])
            .output()
            .expect("glia reload runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot read the token file {path}: not a regular file"
            )),
            "{stderr}"
        );
    }
}

/// A glia reloadable from a config whose check waits on the returned gate, and says when it
/// has read the file; `load_timeout` bounds the check.
async fn with_a_slow_check(
    tag: &str,
    load_timeout: Option<Duration>,
) -> (
    TestGlia,
    Arc<std::sync::Barrier>,
    Arc<std::sync::atomic::AtomicBool>,
    TempFile,
) {
    let file = TempFile::new(tag, &config(json!([counter("c", "A", json!({}))])));
    let gate = Arc::new(std::sync::Barrier::new(2));
    let read = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let path = file.path().to_owned();
    let (waits, says) = (gate.clone(), read.clone());
    let loader: ConfigLoader = Arc::new(move || {
        waits.wait();
        says.store(true, std::sync::atomic::Ordering::SeqCst);
        glia_runtime::app::load_file(&path, &registry())
    });
    let config = glia_runtime::app::load_file(file.path(), &registry()).expect("config");
    let options = StartOptions {
        loader: Some(loader),
        load_timeout,
        ..StartOptions::default()
    };
    let glia = Glia::start_with(config, options)
        .await
        .expect("glia starts");
    // The file goes back too: the loader reads it again.
    (TestGlia::serve(Arc::new(glia)), gate, read, file)
}

/// A reload reads and checks the new config off the thread that asked (here the test's only
/// thread, which also dispatches): a decision asked meanwhile is answered while the check is
/// still waiting, which it could not be if the check ran on this thread.
#[actix_rt::test]
async fn a_slow_config_check_does_not_hold_up_decisions() {
    let (g, gate, read, _file) = with_a_slow_check("slow-check.yaml", None).await;
    // The check is let go after 2 s whatever happens: were it run on this thread, the
    // decision below would come after it, and the assertion would fail instead of hanging.
    let release = gate.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        release.wait();
    });
    let glia = g.glia.clone();
    let reload = actix_rt::spawn(async move { glia.reload().await });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    let reply = g.dispatch_json("on_create_room", create_room()).await;
    assert!(!reply.is_null(), "{reply}");
    assert!(
        !read.load(std::sync::atomic::Ordering::SeqCst),
        "the decision waited for the config check"
    );
    let report = reload.await.unwrap().expect("the reload applies");
    assert!(report.started.is_empty(), "{report:?}");
    g.stop().await;
}

/// A config check that takes longer than the bound fails the reload with a clear error, and
/// nothing changes.
#[actix_rt::test]
async fn a_config_check_past_its_bound_fails_the_reload() {
    let (g, gate, _, _file) =
        with_a_slow_check("stuck-check.yaml", Some(Duration::from_millis(200))).await;
    let err = g.glia.reload().await.expect_err("the reload is refused");
    assert!(matches!(err, ReloadError::LoadTimeout(_)), "{err}");
    assert!(err.to_string().contains("nothing changed"), "{err}");
    // Let the stuck check go, so its thread ends.
    gate.wait();
    let reply = g.dispatch_json("on_create_room", create_room()).await;
    assert!(!reply.is_null(), "glia still decides: {reply}");
    g.stop().await;
}

/// A shutdown that begins while a reload's config check runs abandons the check: the reload
/// is refused as shutting down, without waiting for the check (which, as a Python module's
/// `parse_config`, may take as long as it likes), and the shutdown goes on.
#[actix_rt::test]
async fn a_shutdown_abandons_a_config_check_in_progress() {
    let (g, gate, read, _file) = with_a_slow_check("abandoned-check.yaml", None).await;
    let glia = g.glia.clone();
    let reload = actix_rt::spawn(async move { glia.reload().await });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    g.glia.shutdown(Duration::from_millis(100)).await;
    let err = reload.await.unwrap().expect_err("the reload is refused");
    assert!(matches!(err, ReloadError::ShuttingDown), "{err}");
    assert!(
        !read.load(std::sync::atomic::Ordering::SeqCst),
        "the reload waited for the check"
    );
    // Let the abandoned check go, so its thread ends.
    gate.wait();
    g.stop().await;
}
