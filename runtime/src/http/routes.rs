//! Which module web resource answers a request path, as Synapse's resource tree decides
//! (spec §2.4, §9): the path is split at `/` into segments, each percent-decoded, and walked
//! from the root; a resource serves exactly its own path, unless it is a subtree (a Twisted
//! leaf), which also serves every path below it — the first subtree on the way wins. A
//! trailing slash is a segment of its own, so `/a/b/` is not `/a/b`.

use glia_module_api::web::percent_decode;
use std::collections::HashMap;

/// Where a web resource is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRoute {
    /// Module index.
    pub module: usize,
    /// Index into the module's web resources.
    pub slot: usize,
    /// The path it was registered at.
    pub path: String,
    /// Whether it also serves the paths below `path`.
    pub subtree: bool,
}

/// The registered web resources, by path segments.
#[derive(Debug, Clone, Default)]
pub struct WebRoutes {
    routes: HashMap<Vec<String>, WebRoute>,
}

/// A registered path's segments, as Synapse's `create_resource_tree` splits it.
fn registered_segments(path: &str) -> Vec<String> {
    path.split('/').skip(1).map(str::to_owned).collect()
}

/// A requested path's segments, as Twisted splits and unquotes them.
fn requested_segments(path: &str) -> Vec<String> {
    path.strip_prefix('/')
        .unwrap_or(path)
        .split('/')
        .map(percent_decode)
        .collect()
}

impl WebRoutes {
    /// Whether a resource is registered at exactly `path` (the first registration wins).
    pub fn has(&self, path: &str) -> Option<&WebRoute> {
        self.routes.get(&registered_segments(path))
    }

    /// Registers `route` at its path.
    pub fn insert(&mut self, route: WebRoute) {
        self.routes.insert(registered_segments(&route.path), route);
    }

    /// The resource that answers `path`, if any.
    pub fn find(&self, path: &str) -> Option<&WebRoute> {
        let segments = requested_segments(path);
        (1..=segments.len()).find_map(|depth| {
            let route = self.routes.get(&segments[..depth])?;
            (depth == segments.len() || route.subtree).then_some(route)
        })
    }

    /// The resources of the module at `index`, sorted by path.
    pub fn of_module(&self, index: usize) -> Vec<&WebRoute> {
        let mut routes: Vec<&WebRoute> =
            self.routes.values().filter(|r| r.module == index).collect();
        routes.sort_by(|a, b| a.path.cmp(&b.path));
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(registered: &[(&str, bool)]) -> WebRoutes {
        let mut routes = WebRoutes::default();
        for (slot, (path, subtree)) in registered.iter().enumerate() {
            routes.insert(WebRoute {
                module: 0,
                slot,
                path: (*path).to_owned(),
                subtree: *subtree,
            });
        }
        routes
    }

    fn found(routes: &WebRoutes, path: &str) -> Option<String> {
        routes.find(path).map(|r| r.path.clone())
    }

    #[test]
    fn a_resource_serves_its_own_path_only() {
        let r = routes(&[("/_synapse/client/a/b", false)]);
        assert_eq!(
            found(&r, "/_synapse/client/a/b").as_deref(),
            Some("/_synapse/client/a/b")
        );
        for other in [
            "/_synapse/client/a/b/",
            "/_synapse/client/a/b/x",
            "/_synapse/client/a",
            "/_synapse/client/a/bc",
            "//_synapse/client/a/b",
        ] {
            assert_eq!(found(&r, other), None, "{other}");
        }
    }

    #[test]
    fn a_subtree_serves_every_path_below_it() {
        let r = routes(&[("/x/tree", true)]);
        for path in ["/x/tree", "/x/tree/", "/x/tree/a/b", "/x/tree/%2F"] {
            assert_eq!(found(&r, path).as_deref(), Some("/x/tree"), "{path}");
        }
        assert_eq!(found(&r, "/x/treetop"), None);
    }

    #[test]
    fn segments_are_percent_decoded_one_by_one() {
        let r = routes(&[("/x/a b", false), ("/x/y", false)]);
        assert_eq!(found(&r, "/x/a%20b").as_deref(), Some("/x/a b"));
        assert_eq!(found(&r, "/x/%79").as_deref(), Some("/x/y"));
        // An encoded slash stays inside its segment.
        assert_eq!(found(&r, "/x%2Fy"), None);
    }

    #[test]
    fn nested_resources_are_reached_through_their_parents_unless_a_subtree_is_first() {
        let r = routes(&[("/p", false), ("/p/c", false)]);
        assert_eq!(found(&r, "/p/c").as_deref(), Some("/p/c"));
        let r = routes(&[("/p", true), ("/p/c", false)]);
        assert_eq!(found(&r, "/p/c").as_deref(), Some("/p"));
    }

    #[test]
    fn a_path_registered_with_a_trailing_slash_is_that_path() {
        let r = routes(&[("/t/", false)]);
        assert_eq!(found(&r, "/t/").as_deref(), Some("/t/"));
        assert_eq!(found(&r, "/t"), None);
    }
}
