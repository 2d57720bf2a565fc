//! Reading the small files a config or a command line names (the config itself, tokens and
//! secrets, PEM files, NATS credentials, a module's own files): each must be a regular file
//! and is read up to a cap, so a path to `/dev/zero`, a FIFO or a runaway log fails at once
//! instead of hanging glia or filling its memory. Every part of glia, and any module, reads a
//! named file through here.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest config file glia reads.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;
/// The largest file a setting names (a token, a certificate chain, a credentials file).
pub const MAX_NAMED_FILE: u64 = 1 << 20;

/// Why a named file cannot be used (its `Display` is the reason, not the path).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operating system's error (missing, no permission, ...).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory, a device, a FIFO or a socket.
    #[error("not a regular file")]
    NotRegular,
    /// Larger than the cap.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}

/// The contents of the regular file at `path`, if it holds at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It changes
    // nothing for a regular file, the only kind read.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(FileError::NotRegular);
    }
    let mut contents = Vec::new();
    // One byte past the cap tells a file at the cap from a larger one (or one still growing).
    file.take(limit + 1).read_to_end(&mut contents)?;
    if contents.len() as u64 > limit {
        return Err(FileError::TooLarge(limit));
    }
    Ok(contents)
}

/// The regular file at `path`, opened for appending (created when `create` and missing). A
/// FIFO would otherwise make the open wait for a reader, and a device take what is written.
pub fn open_append(path: &Path, create: bool) -> Result<std::fs::File, FileError> {
    // Opening a FIFO without a reader fails ("no such device"): say what is wrong instead.
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(FileError::NotRegular);
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(create)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(FileError::NotRegular);
    }
    Ok(file)
}

/// [`read_regular`] for a text file.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_regular(path, limit)?).map_err(|e| {
        FileError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("glia-files-{}-{tag}", std::process::id()))
    }

    #[test]
    fn reads_a_small_regular_file() {
        let path = temp("small");
        std::fs::write(&path, "token\n").unwrap();
        assert_eq!(read_text(&path, 6).unwrap(), "token\n");
        assert!(matches!(
            read_regular(&path, 5),
            Err(FileError::TooLarge(5))
        ));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn refuses_devices_directories_and_fifos_without_waiting() {
        for path in ["/dev/zero", "/dev/null", "/"] {
            assert!(
                matches!(
                    read_regular(Path::new(path), 10),
                    Err(FileError::NotRegular)
                ),
                "{path}"
            );
        }
        let fifo = temp("fifo");
        let c_path = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would wait here forever.
        assert!(matches!(
            read_regular(&fifo, 10),
            Err(FileError::NotRegular)
        ));
        assert!(matches!(
            open_append(&fifo, true),
            Err(FileError::NotRegular)
        ));
        std::fs::remove_file(&fifo).unwrap();
        assert!(matches!(
            read_regular(&temp("missing"), 10),
            Err(FileError::Io(_))
        ));
    }
}
