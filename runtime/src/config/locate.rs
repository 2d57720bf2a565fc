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
}

impl Locations {
    /// Indexes `text`; a syntax error comes back with its position.
    pub fn index(text: &str) -> Result<Locations, (String, Position)> {
        let mut parser = Parser::new_from_str(text);
        let mut out = Locations::default();
        // One frame per open collection: for a mapping, whether the next scalar is a key and
        // the key being read; for a sequence, the next index.
        enum Frame {
            Map {
                expect_key: bool,
                key: Option<String>,
            },
            Seq {
                next: usize,
            },
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut path = ConfigPath::root();
        while let Some(item) = parser.next_event() {
            let (event, span) = item.map_err(|e: ScanError| {
                let m = e.marker();
                (
                    e.info().to_owned(),
                    Position {
                        line: m.line() as u32,
                        column: m.col() as u32 + 1,
                    },
                )
            })?;
            let here = Position {
                line: span.start.line() as u32,
                column: span.start.col() as u32 + 1,
            };
            let starts_value = matches!(
                event,
                Event::Scalar(..)
                    | Event::MappingStart(..)
                    | Event::SequenceStart(..)
                    | Event::Alias(..)
            );
            if starts_value {
                // A new node: a mapping key, a mapping value, or a sequence item.
                match stack.last_mut() {
                    Some(Frame::Map {
                        expect_key: true,
                        key,
                    }) => {
                        if let Event::Scalar(text, ..) = &event {
                            *key = Some(text.to_string());
                            path.0.push(PathSegment::Key(text.to_string()));
                            out.positions.entry(path.clone()).or_insert(here);
                            path.0.pop();
                        }
                        if let Some(Frame::Map { expect_key, .. }) = stack.last_mut() {
                            *expect_key = false;
                        }
                        continue;
                    }
                    Some(Frame::Map { expect_key, key }) => {
                        *expect_key = true;
                        path.0
                            .push(PathSegment::Key(key.take().unwrap_or_default()));
                    }
                    Some(Frame::Seq { next }) => {
                        path.0.push(PathSegment::Index(*next));
                        *next += 1;
                        out.positions.entry(path.clone()).or_insert(here);
                    }
                    None => {}
                }
                match event {
                    Event::MappingStart(..) => stack.push(Frame::Map {
                        expect_key: true,
                        key: None,
                    }),
                    Event::SequenceStart(..) => stack.push(Frame::Seq { next: 0 }),
                    _ => {
                        if !stack.is_empty() {
                            path.0.pop();
                        }
                    }
                }
            } else if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                stack.pop();
                if !stack.is_empty() {
                    path.0.pop();
                }
            }
        }
        Ok(out)
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &ConfigPath) -> Option<Position> {
        let mut segments = path.0.clone();
        loop {
            if let Some(p) = self.positions.get(&ConfigPath(segments.clone())) {
                return Some(*p);
            }
            segments.pop()?;
        }
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
}
