//! Config errors that point at a key inside a module's `config:` block.

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// One step of a path into a config document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSegment {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// A path into a config document, such as `rules[2].match`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigPath(pub Vec<PathSegment>);

impl ConfigPath {
    /// The empty path (the document itself).
    pub fn root() -> Self {
        ConfigPath(Vec::new())
    }

    /// This path followed by `key`.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.push(PathSegment::Key(key.into()));
        self
    }

    /// This path followed by `[index]`.
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(PathSegment::Index(index));
        self
    }

    /// `prefix` followed by this path.
    pub fn under(&self, prefix: &ConfigPath) -> ConfigPath {
        let mut segments = prefix.0.clone();
        segments.extend(self.0.iter().cloned());
        ConfigPath(segments)
    }

    /// Parses `a.b[2].c` (the form `Display` writes).
    pub fn parse(text: &str) -> ConfigPath {
        let mut path = ConfigPath::root();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut rest = part;
            if let Some(open) = rest.find('[') {
                if open > 0 {
                    path = path.key(&rest[..open]);
                }
                rest = &rest[open..];
                while let Some(stripped) = rest.strip_prefix('[') {
                    let Some(close) = stripped.find(']') else {
                        break;
                    };
                    match stripped[..close].parse() {
                        Ok(i) => path = path.index(i),
                        Err(_) => path = path.key(&stripped[..close]),
                    }
                    rest = &stripped[close + 1..];
                }
            } else {
                path = path.key(rest);
            }
        }
        path
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                PathSegment::Key(k) if i == 0 => write!(f, "{k}")?,
                PathSegment::Key(k) => write!(f, ".{k}")?,
                PathSegment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A bad module config: what is wrong, and where inside the module's `config:` block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.0.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ConfigError {
    /// Where, relative to the module's `config:` block (empty: the block itself).
    pub path: ConfigPath,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` (written as `a.b[2].c`).
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        ConfigError {
            path: ConfigPath::parse(path),
            message: message.into(),
        }
    }

    /// An error at `path`, built segment by segment (keys may contain dots).
    pub fn at_path(path: ConfigPath, message: impl Into<String>) -> Self {
        ConfigError {
            path,
            message: message.into(),
        }
    }

    /// An error about the whole block.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            path: ConfigPath::root(),
            message: message.into(),
        }
    }
}

/// The path serde_path_to_error recorded, segment by segment.
pub fn path_of(path: &serde_path_to_error::Path) -> ConfigPath {
    use serde_path_to_error::Segment;
    ConfigPath(
        path.iter()
            .filter_map(|segment| match segment {
                Segment::Seq { index } => Some(PathSegment::Index(*index)),
                Segment::Map { key } => Some(PathSegment::Key(key.clone())),
                Segment::Enum { variant } => Some(PathSegment::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect(),
    )
}

/// Deserialises a config block into `T`, naming the failing key in the error. An absent
/// block (`null`) reads as an empty mapping; a block that is not a mapping is refused.
pub fn from_config<T: DeserializeOwned>(config: &Value) -> Result<T, ConfigError> {
    let empty = Value::Object(Default::default());
    let config = match config {
        Value::Null => &empty,
        Value::Object(_) => config,
        other => {
            return Err(ConfigError::new(format!(
                "the config must be a mapping, not {}",
                match other {
                    Value::Array(_) => "a list",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    _ => "a boolean",
                }
            )))
        }
    };
    serde_path_to_error::deserialize(config).map_err(|e| ConfigError {
        path: path_of(e.path()),
        message: e.into_inner().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct C {
        #[serde(default)]
        a: Vec<String>,
        #[serde(default)]
        #[allow(dead_code)]
        users: std::collections::BTreeMap<String, u32>,
    }

    #[test]
    fn null_reads_as_empty_and_non_mappings_are_refused() {
        let c: C = from_config(&Value::Null).unwrap();
        assert!(c.a.is_empty());
        let err = from_config::<C>(&json!([["x"]])).unwrap_err();
        assert_eq!(err.path, ConfigPath::root());
        assert_eq!(err.message, "the config must be a mapping, not a list");
    }

    #[test]
    fn paths_keep_keys_with_dots_whole() {
        let err = from_config::<C>(&json!({"users": {"@bob:example.com": "x"}})).unwrap_err();
        assert_eq!(
            err.path,
            ConfigPath::root().key("users").key("@bob:example.com")
        );
        let err = from_config::<C>(&json!({"a": ["ok", 3]})).unwrap_err();
        assert_eq!(err.path.to_string(), "a[1]");
        let err = from_config::<C>(&json!({"b": 1})).unwrap_err();
        assert!(err.message.contains("unknown field `b`"), "{}", err.message);
    }

    #[test]
    fn paths_parse_and_print() {
        for text in ["rules[2].match", "a.b.c", "x[0][1]"] {
            assert_eq!(ConfigPath::parse(text).to_string(), text);
        }
        assert_eq!(
            ConfigError::at("rules[1].match", "bad").to_string(),
            "rules[1].match: bad"
        );
        assert_eq!(ConfigError::new("bad").to_string(), "bad");
    }
}
