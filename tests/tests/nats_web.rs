//! Web resources of modules placed on NATS, against a real nats-server and real `glia worker`
//! processes: the coordinator serves a worker's page as it serves a local module's (the same
//! status, content type and body), answers 504 when the worker does not answer within the
//! module's timeout and 503 when no worker serves the module; a remote module's paths follow
//! a local module's rules; a reload adds and removes its pages.

mod support;

use futures::StreamExt;
use glia_bus_schema::subjects::{self, Announcement, Description};
use glia_runtime::app::{ConfigLoader, StartOptions};
use glia_runtime::Glia;
use glia_tests::nats::NatsServer;
use glia_tests::process::GliaProcess;
use glia_tests::{registry, TestGlia};
use serde_json::{json, Value};
use std::sync::Arc;
use support::{send, Reply, TempFile};

/// The built-in demo module's page.
const PAGE: &str = "/_synapse/client/demo/hello";

/// A config with these module entries, on the NATS bus at `url` when given.
fn config(url: Option<&str>, modules: Value) -> String {
    let mut config = json!({"deadline": "30s", "modules": modules});
    if let Some(url) = url {
        config["bus"] = json!({"type": "nats", "url": url});
    }
    config.to_string()
}

/// The built-in demo module (it registers [`PAGE`]) as `name`, placed at `placement`.
fn demo(name: &str, placement: &str) -> Value {
    json!({"module": "demo", "name": name, "placement": placement, "timeout": "1s"})
}

/// Starts `glia worker` for the config in `file`; returns once it announces `module`, so it
/// is subscribed and answers.
async fn worker(nats: &NatsServer, file: &TempFile, module: &str) -> GliaProcess {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut announcements = client
        .subscribe(subjects::announce_subject(module))
        .await
        .unwrap();
    let worker = GliaProcess::worker(file.path(), &[], false);
    let message = announcements.next().await.expect("an announcement");
    let _: Announcement = serde_json::from_slice(&message.payload).unwrap();
    worker
}

/// `method` on `path_and_query` of `g`'s HTTP server.
async fn fetch(g: &TestGlia, method: &str, path_and_query: &str) -> Reply {
    let url = format!("{}{path_and_query}", g.base_url);
    let body = (method == "POST").then_some(&b"{}"[..]);
    send(method, &url, &[], body).await
}

/// Status, content type and body: what a client sees of a page.
fn seen(reply: &Reply) -> (u16, String, String) {
    let content_type = reply.header("content-type").unwrap_or_default().to_owned();
    (reply.status, content_type, reply.text())
}

/// The web resources `/_glia/v1/modules` lists for module `name`.
fn listed(g: &TestGlia, name: &str) -> Vec<String> {
    let modules = g.glia.modules();
    let module = modules.iter().find(|m| m.name == name).expect("listed");
    module.web_resources.clone()
}

#[actix_rt::test]
async fn a_workers_page_is_a_local_modules_page_then_504_when_it_stalls_and_503_when_gone() {
    let nats = NatsServer::start();
    let remote = config(Some(&nats.url()), json!([demo("demo", "nats")]));
    let file = TempFile::new("nats-web.yaml", &remote);
    let mut worker = worker(&nats, &file, "demo").await;
    let g = TestGlia::start(&remote).await;
    let local = TestGlia::start(&config(None, json!([demo("demo", "local")]))).await;
    assert_eq!(listed(&g, "demo"), [PAGE]);
    for (method, path) in [
        ("GET", format!("{PAGE}?name=x")),
        ("GET", format!("{PAGE}?name=%C3%A9t%C3%A9&more=1")),
        ("GET", PAGE.to_owned()),
        ("POST", format!("{PAGE}?name=x")),
        ("GET", format!("{PAGE}/below")),
    ] {
        let over_nats = seen(&fetch(&g, method, &path).await);
        let in_process = seen(&fetch(&local, method, &path).await);
        assert_eq!(over_nats, in_process, "{method} {path}");
    }
    let hello = fetch(&g, "GET", &format!("{PAGE}?name=x")).await;
    assert_eq!(hello.json(), json!({"hello": "x"}));

    // Stopped: connected and subscribed, silent. The module's timeout answers.
    worker.signal("STOP");
    let error = fetch(&g, "GET", &format!("{PAGE}?name=x"))
        .await
        .assert_matrix_error(504, "M_UNKNOWN");
    assert!(error.contains("did not answer within 1000 ms"), "{error}");
    worker.signal("CONT");

    // Gone: nobody serves the module.
    worker.kill();
    let error = fetch(&g, "GET", &format!("{PAGE}?name=x"))
        .await
        .assert_matrix_error(503, "M_UNKNOWN");
    assert!(error.contains("no worker serves module demo"), "{error}");
}

#[actix_rt::test]
async fn a_path_claimed_twice_goes_to_the_first_module_wherever_each_runs() {
    let nats = NatsServer::start();
    let url = nats.url();
    let worker_config = config(Some(&url), json!([demo("there", "nats")]));
    let file = TempFile::new("nats-web-claims.yaml", &worker_config);
    let _worker = worker(&nats, &file, "there").await;

    let local_first = config(
        Some(&url),
        json!([demo("here", "local"), demo("there", "nats")]),
    );
    let g = TestGlia::start(&local_first).await;
    assert_eq!(listed(&g, "here"), [PAGE]);
    assert!(listed(&g, "there").is_empty());
    g.stop().await;

    let remote_first = config(
        Some(&url),
        json!([demo("there", "nats"), demo("here", "local")]),
    );
    let g = TestGlia::start(&remote_first).await;
    assert_eq!(listed(&g, "there"), [PAGE]);
    assert!(listed(&g, "here").is_empty());
    let hello = fetch(&g, "GET", &format!("{PAGE}?name=x")).await;
    assert_eq!((hello.status, hello.json()), (200, json!({"hello": "x"})));
}

#[actix_rt::test]
async fn a_remote_module_claiming_a_path_of_synapses_apis_is_refused_as_a_local_one_is() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    // A program in another language, describing a page under /_matrix.
    let mut describe = client
        .subscribe(subjects::describe_subject("foreign"))
        .await
        .unwrap();
    let responder = client.clone();
    actix_rt::spawn(async move {
        while let Some(message) = describe.next().await {
            let description = Description {
                callbacks: vec![glia_bus_schema::Callback::UserMayInvite],
                web_resources: vec!["/_matrix/client/v3/foreign".into()],
                ..Description::default()
            };
            let body = serde_json::to_vec(&description).unwrap();
            let _ = responder.publish(message.reply.unwrap(), body.into()).await;
        }
    });
    let yaml = config(
        Some(&nats.url()),
        json!([{"module": "remote", "name": "foreign", "placement": "nats"}]),
    );
    let error = match TestGlia::try_start(&yaml).await {
        Ok(_) => panic!("glia started with a module claiming a path under /_matrix"),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("/_matrix/client/v3/foreign") && error.contains("Synapse's APIs"),
        "{error}"
    );
}

#[actix_rt::test]
async fn a_reload_adds_and_removes_a_nats_modules_pages() {
    let nats = NatsServer::start();
    let url = nats.url();
    // `ghost` is planned from its `callbacks:`; no worker needs to run for it.
    let ghost = json!({"module": "remote", "name": "ghost", "placement": "nats",
                       "callbacks": ["user_may_invite"]});
    let without = config(Some(&url), json!([ghost]));
    let with = config(Some(&url), json!([ghost, demo("demo", "nats")]));
    let file = TempFile::new("nats-web-reload.yaml", &with);
    let _worker = worker(&nats, &file, "demo").await;
    std::fs::write(file.path(), &without).unwrap();
    let path = file.path().to_owned();
    let loader: ConfigLoader = Arc::new(move || glia_runtime::app::load_file(&path, &registry()));
    let started = Glia::start_with(
        TestGlia::config(&without).unwrap(),
        StartOptions {
            loader: Some(loader),
            ..StartOptions::default()
        },
    )
    .await
    .expect("glia starts");
    let g = TestGlia::serve(Arc::new(started));
    let page = format!("{PAGE}?name=x");
    fetch(&g, "GET", &page)
        .await
        .assert_matrix_error(404, "M_UNRECOGNIZED");

    std::fs::write(file.path(), &with).unwrap();
    g.glia.reload().await.expect("the reload is applied");
    let hello = fetch(&g, "GET", &page).await;
    assert_eq!((hello.status, hello.json()), (200, json!({"hello": "x"})));

    std::fs::write(file.path(), &without).unwrap();
    g.glia.reload().await.expect("the reload is applied");
    fetch(&g, "GET", &page)
        .await
        .assert_matrix_error(404, "M_UNRECOGNIZED");
}
