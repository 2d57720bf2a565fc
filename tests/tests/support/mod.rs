//! Helpers shared by the black-box test files of this directory (`mod support;`): temporary
//! files, raw HTTP requests that keep the status, headers and body bytes, Matrix error
//! checks, the decision log read back, and an HTTP server for a `Glia` started from a custom
//! registry.

#![allow(dead_code)]

use glia_runtime::Glia;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A file in the system temporary directory, removed on drop.
pub struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Writes `contents` to a new file whose name contains `tag`.
    pub fn new(tag: &str, contents: &str) -> TempFile {
        let path = Self::unused_path(tag);
        std::fs::write(&path, contents).expect("write a temporary file");
        TempFile { path }
    }

    /// A path in the temporary directory that nothing has been written to.
    pub fn unused_path(tag: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("glia-test-{}-{n}-{tag}", std::process::id()))
    }

    /// A FIFO with no writer at a new path (removed on drop): a reader that opens it blocking
    /// would wait forever.
    pub fn fifo(tag: &str) -> TempFile {
        let path = Self::unused_path(tag);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo (coreutils) runs");
        assert!(made.success(), "mkfifo {}", path.display());
        TempFile { path }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where it is, as a string for a config.
    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An HTTP response: status, headers (lower-case names) and body bytes.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics, showing the body, when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON content type.
    pub fn assert_json_content_type(&self) {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "content type {content_type:?} is not JSON: {self:?}"
        );
    }

    /// Asserts a Matrix error: this status, a JSON content type, and a body that is exactly
    /// `{"errcode": errcode, "error": <string>}`. Returns the `error` text.
    pub fn assert_matrix_error(&self, status: u16, errcode: &str) -> String {
        assert_eq!(self.status, status, "status of {self:?} / {}", self.text());
        self.assert_json_content_type();
        let body = self.json();
        let object = body
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {body}"));
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["errcode", "error"], "error body {body}");
        assert_eq!(body["errcode"], errcode, "error body {body}");
        let error = body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("`error` is not a string: {body}"));
        assert!(!error.is_empty(), "empty `error` in {body}");
        error.to_owned()
    }
}

/// Sends `method url` with `headers` and, when given, `body`; keeps everything of the reply.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let method = awc::http::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
    let mut req = awc::Client::default().request(method, url);
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    let sent = match body {
        Some(b) => req.send_body(b.to_vec()).await,
        None => req.send().await,
    };
    let mut resp = sent.unwrap_or_else(|e| panic!("HTTP request to {url} failed: {e}"));
    let body = resp.body().limit(16 << 20).await.expect("HTTP body");
    Reply {
        status: resp.status().as_u16(),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    }
}

/// The decision log at `path` once it holds `n` records (the writer runs off the dispatch
/// path, so a test waits for it).
pub async fn decision_records(path: &Path, n: usize) -> Vec<Value> {
    for _ in 0..600 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= n {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
                .collect();
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the decision log never held {n} records: {:?}",
        std::fs::read_to_string(path)
    )
}

/// A running HTTP server over a `Glia`, on a free loopback port.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    inner: glia_tests::TestGlia,
}

impl Served {
    /// Serves `glia` the way `glia serve` does (see `TestGlia::serve`).
    pub fn start(glia: Arc<Glia>) -> Served {
        let served = glia_tests::TestGlia::serve(glia);
        Served {
            base_url: served.base_url.clone(),
            inner: served,
        }
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> Reply {
        send("GET", &format!("{}{path}", self.base_url), &[], None).await
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.inner.stop().await;
    }
}
