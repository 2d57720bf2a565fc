//! The bounded, regular-file-only reader every file a config names goes through (it lives in
//! the module API, so modules read their own files the same way).

pub use glia_module_api::files::{
    open_append, read_regular, read_text, FileError, MAX_CONFIG_FILE, MAX_NAMED_FILE,
};
