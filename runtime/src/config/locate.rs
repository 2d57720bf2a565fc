//! Where each key of a YAML document is, so errors can name a line.

use glia_module_api::{ConfigPath, PathSegment};
use saphyr_parser::{Event, Parser, ScanError};
use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based.
    pub line: u32,
    /// 1-based.
    pub column: u32,
}

/// The position of every mapping key and sequence item, by path.
#[derive(Debug, Default)]
pub struct Locations {
    positions: HashMap<ConfigPath, Position>,
    /// `(target, source)`: the nodes under `source` also appear under `target`, through an
    /// alias (`target` is `*anchor`) or a merge key (`<<: *anchor` or `<<: {...}` merge
    /// `source` into the mapping at `target`). A key found only this way gets the position
    /// of the text that defines it. In merge order: earlier sources win, as YAML says.
    links: Vec<(ConfigPath, ConfigPath)>,
}

/// YAML's merge key.
const MERGE_KEY: &str = "<<";
/// How many aliases and merge keys one lookup follows in a chain (anchors nest, and may
/// form a cycle), and how many paths it tries in all (a document with many merges must not
/// make a lookup explode).
const MAX_CHAIN: usize = 16;
const LOOKUP_BUDGET: usize = 1024;

/// One frame per open collection: for a mapping, whether the next scalar is a key and the
/// key being read; for a sequence, the next index, and for a sequence that is a merge key's
/// value, the mapping its items merge into.
enum Frame {
    Map {
        expect_key: bool,
        key: Option<String>,
    },
    Seq {
        next: usize,
        merges_into: Option<ConfigPath>,
    },
}

/// The state of one indexing pass over a document's events: what is found so far, the open
/// collections, the path of the node being read and where each anchor was defined.
#[derive(Default)]
struct Indexer {
    out: Locations,
    stack: Vec<Frame>,
    path: ConfigPath,
    anchors: HashMap<usize, ConfigPath>,
}

/// The 1-based position of a parser's (0-based column) marker.
fn position(marker: &saphyr_parser::Marker) -> Position {
    Position {
        line: marker.line() as u32,
        column: marker.col() as u32 + 1,
    }
}

impl Indexer {
    /// Takes in one event: a new node is located, a collection's end closes its frame.
    fn event(&mut self, event: Event<'_>, here: Position) {
        let starts_value = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(..)
        );
        if starts_value {
            // A new node: a mapping key, a mapping value, or a sequence item.
            if self.key(&event, here) {
                return;
            }
            let merges_into = self.enter(here);
            self.link(&event, merges_into);
            self.open(event);
        } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            self.stack.pop();
            if !self.stack.is_empty() {
                self.path.0.pop();
            }
        }
    }

    /// Reads a mapping's key, if one is expected (`false` if not): the key is located and
    /// kept for its value, which is the node that extends the path.
    fn key(&mut self, event: &Event<'_>, here: Position) -> bool {
        let Some(Frame::Map { expect_key, key }) = self.stack.last_mut() else {
            return false;
        };
        if !*expect_key {
            return false;
        }
        if let Event::Scalar(text, ..) = event {
            *key = Some(text.to_string());
            self.path.0.push(PathSegment::Key(text.to_string()));
            self.out.positions.entry(self.path.clone()).or_insert(here);
            self.path.0.pop();
        }
        *expect_key = false;
        true
    }

    /// Extends the path to a mapping value or a sequence item (locating an item, and the
    /// document itself, where it starts). Returns the mapping this node is merged into, when
    /// it is a merge key's value or an item of one.
    fn enter(&mut self, here: Position) -> Option<ConfigPath> {
        let mut merges_into = None;
        match self.stack.last_mut() {
            Some(Frame::Map { expect_key, key }) => {
                *expect_key = true;
                let key = key.take().unwrap_or_default();
                if key == MERGE_KEY {
                    merges_into = Some(self.path.clone());
                }
                self.path.0.push(PathSegment::Key(key));
            }
            Some(Frame::Seq {
                next,
                merges_into: into,
            }) => {
                self.path.0.push(PathSegment::Index(*next));
                *next += 1;
                self.out.positions.entry(self.path.clone()).or_insert(here);
                merges_into.clone_from(into);
            }
            // The document itself: where it starts is where a whole-config error points.
            None => {
                self.out.positions.entry(self.path.clone()).or_insert(here);
            }
        }
        merges_into
    }

    /// Records the node's anchor, and what it stands for (an alias its anchor's nodes, a
    /// merged mapping its own) as a link, so lookups find keys written elsewhere.
    fn link(&mut self, event: &Event<'_>, merges_into: Option<ConfigPath>) {
        let anchor = match event {
            Event::Scalar(_, _, id, _)
            | Event::MappingStart(id, _)
            | Event::SequenceStart(id, _) => *id,
            _ => 0,
        };
        if anchor != 0 {
            self.anchors.insert(anchor, self.path.clone());
        }
        let source = match event {
            Event::Alias(id) => self.anchors.get(id).cloned(),
            Event::MappingStart(..) => Some(self.path.clone()),
            _ => None,
        };
        match (merges_into, source) {
            (Some(into), Some(source)) => self.out.links.push((into, source)),
            (None, Some(source)) if matches!(event, Event::Alias(_)) => {
                self.out.links.push((self.path.clone(), source))
            }
            _ => {}
        }
    }

    /// Opens a frame for a collection; a node with no children (a scalar, an alias) ends
    /// at once, taking its segment off the path.
    fn open(&mut self, event: Event<'_>) {
        match event {
            Event::MappingStart(..) => self.stack.push(Frame::Map {
                expect_key: true,
                key: None,
            }),
            Event::SequenceStart(..) => {
                // `<<: [*a, *b]` merges each item.
                let merges_into = match self.path.0.last() {
                    Some(PathSegment::Key(k)) if k == MERGE_KEY => {
                        Some(ConfigPath(self.path.0[..self.path.0.len() - 1].to_vec()))
                    }
                    _ => None,
                };
                self.stack.push(Frame::Seq {
                    next: 0,
                    merges_into,
                })
            }
            _ => {
                if !self.stack.is_empty() {
                    self.path.0.pop();
                }
            }
        }
    }
}

impl Locations {
    /// Indexes `text`; a syntax error comes back with its position.
    pub fn index(text: &str) -> Result<Locations, (String, Position)> {
        let mut parser = Parser::new_from_str(text);
        let mut indexer = Indexer::default();
        while let Some(item) = parser.next_event() {
            let (event, span) =
                item.map_err(|e: ScanError| (e.info().to_owned(), position(e.marker())))?;
            indexer.event(event, position(&span.start));
        }
        Ok(indexer.out)
    }

    /// The position of `path`, or of its nearest ancestor that has one (the document's start,
    /// for a path nothing else locates).
    pub fn find(&self, path: &ConfigPath) -> Option<Position> {
        let mut segments = path.0.clone();
        let mut budget = LOOKUP_BUDGET;
        loop {
            if let Some(p) = self.exact(&ConfigPath(segments.clone()), MAX_CHAIN, &mut budget) {
                return Some(p);
            }
            if segments.pop().is_none() {
                return self.positions.get(&ConfigPath::root()).copied();
            }
        }
    }

    /// The position of `path` itself: written there, else where an alias or a merge key
    /// brought it from (following at most `chain` of them, while `budget` lasts).
    fn exact(&self, path: &ConfigPath, chain: usize, budget: &mut usize) -> Option<Position> {
        *budget = budget.checked_sub(1)?;
        if let Some(p) = self.positions.get(path) {
            return Some(*p);
        }
        let chain = chain.checked_sub(1)?;
        self.links.iter().find_map(|(target, source)| {
            if *budget == 0 {
                return None;
            }
            let rest = path.0.strip_prefix(target.0.as_slice())?;
            let mut from = source.clone();
            from.0.extend_from_slice(rest);
            self.exact(&from, chain, budget)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let text = "listen: 127.0.0.1:1\nmodules:\n  - module: demo\n    config:\n      rules:\n        - match: a\n        - match: '('\n  - module: other\n";
        let loc = Locations::index(text).unwrap();
        let at = |p: &str| loc.find(&ConfigPath::parse(p)).map(|p| (p.line, p.column));
        assert_eq!(at("listen"), Some((1, 1)));
        assert_eq!(at("modules"), Some((2, 1)));
        assert_eq!(at("modules[0]"), Some((3, 5)));
        assert_eq!(at("modules[0].module"), Some((3, 5)));
        assert_eq!(at("modules[0].config.rules[1].match"), Some((7, 11)));
        assert_eq!(at("modules[1].module"), Some((8, 5)));
        // A missing key falls back to its parent.
        assert_eq!(at("modules[1].config"), Some((8, 5)));
    }

    #[test]
    fn flow_style_and_syntax_errors() {
        let loc = Locations::index("a: {b: [1, {c: 2}]}\n").unwrap();
        assert_eq!(
            loc.find(&ConfigPath::parse("a.b[1].c")).map(|p| p.line),
            Some(1)
        );
        let err = Locations::index("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.1.line >= 1);
    }

    #[test]
    fn keys_brought_by_aliases_and_merge_keys_point_where_they_are_written() {
        let text = concat!(
            "defaults: &d\n",                            // 1
            "  timeout: 5s\n",                           // 2
            "base: &b {priority: 1, timeout: x}\n",      // 3
            "modules:\n",                                // 4
            "  - <<: *b\n",                              // 5
            "    module: demo\n",                        // 6
            "    timeout: 1s\n",                         // 7
            "  - <<: [*d, {name: n, config: {a: 1}}]\n", // 8
            "    module: other\n",                       // 9
            "  - <<: {max_in_flight: 0}\n",              // 10
            "    module: third\n",                       // 11
            "  - *b\n",                                  // 12
        );
        let loc = Locations::index(text).unwrap();
        let at = |p: &str| loc.find(&ConfigPath::parse(p)).map(|p| (p.line, p.column));
        // Merged from an anchor: where the anchor's mapping says it.
        assert_eq!(at("modules[0].priority"), Some((3, 11)));
        // Written in the entry itself: there, not in the anchor.
        assert_eq!(at("modules[0].timeout"), Some((7, 5)));
        assert_eq!(at("modules[0].module"), Some((6, 5)));
        // Merged from a list: each item, the alias's anchor and the inline mapping.
        assert_eq!(at("modules[1].timeout"), Some((2, 3)));
        assert_eq!(at("modules[1].name"), Some((8, 15)));
        assert_eq!(at("modules[1].config.a"), Some((8, 33)));
        assert_eq!(at("modules[1].module"), Some((9, 5)));
        // Merged from an inline mapping.
        assert_eq!(at("modules[2].max_in_flight"), Some((10, 10)));
        // A whole entry that is an alias.
        assert_eq!(at("modules[3].timeout"), Some((3, 24)));
        // Lines after the merges stay right.
        assert_eq!(at("modules[2].module"), Some((11, 5)));
    }

    #[test]
    fn an_alias_cycle_or_a_thousand_merges_do_not_loop() {
        // Not valid YAML for a document, but the index must not hang on whatever it gets.
        if let Ok(loc) = Locations::index("a: &x [*x]\n") {
            let _ = loc.find(&ConfigPath::parse("a[0][0][0].b"));
        }
        // Every lookup of a missing key tries every merge, which tries every merge...
        let mut text = String::from("x: &a {k: 1}\n");
        for _ in 0..1000 {
            text.push_str("<<: *a\n");
        }
        if let Ok(loc) = Locations::index(&text) {
            assert_eq!(
                loc.find(&ConfigPath::parse("nowhere.deep")).map(|p| p.line),
                Some(1)
            );
        }
    }

    #[test]
    fn a_path_nothing_locates_is_at_the_document_start() {
        let loc = Locations::index("\n\n  - a\n").unwrap();
        assert_eq!(
            loc.find(&ConfigPath::root()),
            Some(Position { line: 3, column: 3 })
        );
        assert_eq!(
            loc.find(&ConfigPath::parse("modules[0].timeout"))
                .map(|p| p.line),
            Some(3)
        );
    }
}
