//! The Unix-socket listener (`listen_unix`): a bridge on the same host reaches glia without
//! TCP. The socket is replaced when a previous glia left it behind, never when it is some
//! other kind of file.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Removes a socket left at `path` by a glia that stopped, so it can be bound again; refuses
/// a path that holds anything but a socket, or a socket something still listens on.
pub fn prepare(path: &Path) -> io::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_owned()),
        Err(e) => return Err(e),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Ok(_) => {}
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("something already listens on {}", path.display()),
        ));
    }
    std::fs::remove_file(path)?;
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_is_replaced_and_other_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("glia-unix-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert_eq!(prepare(&stale).unwrap(), stale);
        assert!(!stale.exists());

        let live = dir.join("live.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        assert_eq!(prepare(&live).unwrap_err().kind(), io::ErrorKind::AddrInUse);

        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            prepare(&file).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(prepare(&dir.join("absent.sock")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
