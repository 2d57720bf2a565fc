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

    /// An error about the whole block.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError {
            path: ConfigPath::root(),
            message: message.into(),
        }
    }
}

/// Deserialises a config block into `T`, naming the failing key in the error.
pub fn from_config<T: DeserializeOwned>(config: &Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = ConfigPath::parse(&e.path().to_string().replace("?", ""));
        ConfigError {
            path: if path.0.len() == 1 && path.0[0] == PathSegment::Key(".".into()) {
                ConfigPath::root()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        }
    })
}
