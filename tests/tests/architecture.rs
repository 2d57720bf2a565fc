//! The house rules of `docs/ARCHITECTURE.md`, held by reading the code: dependencies between
//! the runtime's top-level modules run one way (down the layer table below), no files import
//! each other in a circle, and no function outside tests and tables is longer than
//! [`MAX_FUNCTION_LINES`]. A new upward import or a long function fails here, naming the
//! file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// The runtime's top-level modules, bottom layer first. A module may import from layers
/// below its own, never from its own layer's other modules or from above. Keep in step with
/// the layer map in docs/ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "vocabulary",
        &[
            "logging",
            "nats_client",
            "policy",
            "propagation",
            "supervision",
        ],
    ),
    ("rules", &["rules"]),
    ("config", &["config"]),
    ("hosts", &["host", "python"]),
    ("telemetry", &["telemetry"]),
    ("buses", &["bus"]),
    ("coordinator", &["coordinator"]),
    ("ingresses", &["http", "nats_ingress"]),
    ("app", &["app"]),
    ("processes", &["worker", "chaos", "cli_reload", "replay"]),
];

/// Functions longer than this (from `fn` to the closing brace) must be split.
const MAX_FUNCTION_LINES: usize = 80;

/// Functions that are tables (one row per line), allowed past the limit.
const TABLES: &[&str] = &["runtime/src/rules.rs: rules"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn parse(path: &Path) -> syn::File {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The module path of a file under `src` (`http/mod.rs` is `http`, `lib.rs` is the root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.meta.to_token_stream_string().contains("test"))
    })
}

trait MetaText {
    fn to_token_stream_string(&self) -> String;
}

impl MetaText for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote_free(self)
    }
}

fn quote_free(meta: &syn::Meta) -> String {
    match meta {
        syn::Meta::List(list) => list.tokens.to_string(),
        _ => String::new(),
    }
}

/// One reference from a file to another module: the path as written and its line.
struct Reference {
    path: Vec<String>,
    line: usize,
    reexport: bool,
}

/// Collects the `crate::`, `super::` and `self::` paths of a file (in `use` items and in
/// code), and its child modules' relative paths, outside test-only items.
struct References<'a> {
    module: &'a [String],
    is_mod_file: bool,
    found: Vec<Reference>,
    reexport: bool,
}

impl References<'_> {
    fn absolute(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "self" => {
                let mut p = self.module.to_vec();
                p.extend_from_slice(&segments[1..]);
                Some(p)
            }
            "super" => {
                let mut p = self.module.to_vec();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    p.pop()?;
                    rest = &rest[1..];
                }
                p.extend_from_slice(rest);
                Some(p)
            }
            // A child module named without `self::` (`use dispatch::Trace` in a mod.rs).
            _ if self.is_mod_file || self.module.is_empty() => {
                let mut p = self.module.to_vec();
                p.extend_from_slice(segments);
                Some(p)
            }
            _ => None,
        }
    }

    fn record(&mut self, segments: Vec<String>, line: usize) {
        if let Some(path) = self.absolute(&segments) {
            self.found.push(Reference {
                path,
                line,
                reexport: self.reexport,
            });
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                path.push(n.ident.to_string());
                self.record(path, n.ident.span().start().line);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                path.push(r.ident.to_string());
                self.record(path, r.ident.span().start().line);
            }
            syn::UseTree::Glob(g) => self.record(prefix.clone(), g.star_token.span().start().line),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for References<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.reexport = !matches!(item.vis, syn::Visibility::Inherited);
        self.use_tree(&mut Vec::new(), &item.tree);
        self.reexport = false;
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(super)` names who may see an item, not a dependency.
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super")
        ) {
            self.record(segments, path.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // Paths inside macro calls (`format!`, `matches!`) are tokens: read `crate::a::b`.
        let tokens: Vec<String> = mac
            .tokens
            .to_string()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let line = mac.span().start().line;
        let mut i = 0;
        while i < tokens.len() {
            if tokens[i] == "crate" || tokens[i] == "super" {
                let mut path = vec![tokens[i].clone()];
                while i + 2 < tokens.len() && tokens[i + 1] == "::" {
                    path.push(tokens[i + 2].clone());
                    i += 2;
                }
                if path.len() > 1 {
                    self.record(path, line);
                }
            }
            i += 1;
        }
    }
}

/// The runtime's files: module path → (file, references).
struct Crate {
    files: BTreeMap<Vec<String>, (PathBuf, Vec<Reference>)>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut paths = Vec::new();
        rust_files(src, &mut paths);
        let mut files = BTreeMap::new();
        for file in paths {
            if file.ends_with("main.rs") {
                continue; // the binary: it may use anything
            }
            let module = module_of(src, &file);
            let syntax = parse(&file);
            let mut refs = References {
                module: &module,
                is_mod_file: file.ends_with("mod.rs") || file.ends_with("lib.rs"),
                found: Vec::new(),
                reexport: false,
            };
            refs.visit_file(&syntax);
            let found = refs.found;
            files.insert(module, (file, found));
        }
        Crate { files }
    }

    /// The file a path leads into: the longest prefix that is a module.
    fn resolve(&self, path: &[String]) -> Option<&Vec<String>> {
        (1..=path.len())
            .rev()
            .find_map(|n| self.files.get_key_value(&path[..n]).map(|(k, _)| k))
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, members)| members.contains(&module))
}

#[test]
fn every_top_level_module_of_the_runtime_has_a_layer() {
    let src = root().join("runtime/src");
    let krate = Crate::read(&src);
    let tops: BTreeSet<&str> = krate
        .files
        .keys()
        .filter_map(|m| m.first())
        .map(String::as_str)
        .collect();
    let missing: Vec<_> = tops.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(
        missing.is_empty(),
        "modules with no layer in LAYERS (tests/tests/architecture.rs): {missing:?}"
    );
}

#[test]
fn imports_between_the_runtimes_modules_run_down_the_layers() {
    let src = root().join("runtime/src");
    let krate = Crate::read(&src);
    let mut wrong = Vec::new();
    for (module, (file, refs)) in &krate.files {
        let Some(from) = module.first() else { continue };
        let from_layer = layer_of(from);
        for r in refs {
            let Some(target) = krate.resolve(&r.path) else {
                continue;
            };
            let Some(to) = target.first() else { continue };
            if to == from {
                continue;
            }
            let (Some(a), Some(b)) = (from_layer, layer_of(to)) else {
                continue;
            };
            if b >= a {
                wrong.push(format!(
                    "{}:{}: `{from}` ({}) imports `{}` ({}), which is not below it",
                    file.strip_prefix(root()).unwrap_or(file).display(),
                    r.line,
                    LAYERS[a].0,
                    r.path.join("::"),
                    LAYERS[b].0,
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "upward or sideways imports:\n{}",
        wrong.join("\n")
    );
}

/// Strongly connected groups of more than one file (Tarjan's algorithm).
fn circles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct State<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on_stack: BTreeSet<&'a Vec<String>>,
        found: Vec<Vec<Vec<String>>>,
    }
    fn connect<'a>(s: &mut State<'a>, v: &'a Vec<String>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                connect(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.found.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v) {
            connect(&mut state, v);
        }
    }
    state.found
}

#[test]
fn no_files_of_the_runtime_import_each_other_in_a_circle() {
    let src = root().join("runtime/src");
    let krate = Crate::read(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, (_, refs)) in &krate.files {
        let out = edges.entry(module.clone()).or_default();
        // A re-export (`pub use child::Item`) passes a name along; it is not a dependency.
        for r in refs.iter().filter(|r| !r.reexport) {
            if let Some(target) = krate.resolve(&r.path) {
                if target != module {
                    out.insert(target.clone());
                }
            }
        }
    }
    let found: Vec<String> = circles(&edges)
        .into_iter()
        .map(|group| {
            group
                .iter()
                .map(|m| {
                    if m.is_empty() {
                        "lib".into()
                    } else {
                        m.join("/")
                    }
                })
                .collect::<Vec<_>>()
                .join(" -> ")
        })
        .collect();
    assert!(
        found.is_empty(),
        "files importing each other in a circle:\n{}",
        found.join("\n")
    );
}

/// Collects the functions longer than the limit, outside test-only items.
struct LongFunctions<'a> {
    file: &'a str,
    found: Vec<String>,
}

impl LongFunctions<'_> {
    fn check(&mut self, name: &syn::Ident, attrs: &[syn::Attribute], start: usize, end: usize) {
        let lines = end + 1 - start;
        let key = format!("{}: {name}", self.file);
        if lines > MAX_FUNCTION_LINES && !is_test_only(attrs) && !TABLES.contains(&key.as_str()) {
            self.found
                .push(format!("{}:{start}: fn {name} is {lines} lines", self.file));
        }
    }
}

impl<'ast> Visit<'ast> for LongFunctions<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_only(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let (start, end) = (
            f.sig.fn_token.span.start().line,
            f.block.brace_token.span.close().end().line,
        );
        self.check(&f.sig.ident, &f.attrs, start, end);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let (start, end) = (
            f.sig.fn_token.span.start().line,
            f.block.brace_token.span.close().end().line,
        );
        self.check(&f.sig.ident, &f.attrs, start, end);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            let (start, end) = (
                f.sig.fn_token.span.start().line,
                block.brace_token.span.close().end().line,
            );
            self.check(&f.sig.ident, &f.attrs, start, end);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

#[test]
fn no_function_outside_tests_and_tables_is_longer_than_the_limit() {
    let mut found = Vec::new();
    for dir in [
        "runtime/src",
        "runtime/module-api/src",
        "bus-schema/src",
        "modules/src",
        "embed/src",
        "embed/engine/src",
    ] {
        let mut paths = Vec::new();
        rust_files(&root().join(dir), &mut paths);
        for path in paths {
            let rel = path.strip_prefix(root()).unwrap().display().to_string();
            let mut visit = LongFunctions {
                file: &rel,
                found: Vec::new(),
            };
            visit.visit_file(&parse(&path));
            found.extend(visit.found);
        }
    }
    assert!(
        found.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split them, or list a table in TABLES):\n{}",
        found.join("\n")
    );
}
