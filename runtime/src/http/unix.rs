//! The Unix-socket listener (`listen_unix`): a bridge on the same host reaches glia without
//! TCP. The socket is replaced when a previous glia left it behind, never when it is some
//! other kind of file.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The numeric id of `group`: a group name the system knows, or a number.
pub fn group_id(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let name =
        std::ffi::CString::new(group).map_err(|_| format!("{group:?} is not a group name"))?;
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getgrnam_r writes only into `entry` and
    // `buffer` (of the length given) and sets `found` to `&entry` or null.
    let status = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return Err(format!("no group {group:?} on this system"));
    }
    Ok(entry.gr_gid)
}

/// Gives the socket at `path` its configured mode and group (after binding: until then the
/// umask's, stricter or not, applied).
pub fn set_access(path: &Path, mode: Option<u32>, group: Option<&str>) -> io::Result<()> {
    if let Some(group) = group {
        let gid = group_id(group).map_err(io::Error::other)?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes, the last a NUL.
pub const MAX_PATH: usize = 107;

/// What binding `path` would refuse, checked without binding (so `check-config` says it, with
/// the key, instead of `serve` failing to start): a path too long for a socket, a directory
/// that does not exist or cannot be written to, something at the path that is not a socket.
/// A socket already there passes: a stopped glia's is replaced at start, and a running one's
/// is its own on a reload (a socket something else listens on is still refused at start).
pub fn check(path: &Path) -> Result<(), String> {
    let length = path.as_os_str().len();
    if length > MAX_PATH {
        return Err(format!(
            "{} is {length} bytes long; a Unix socket's path can have at most {MAX_PATH}",
            path.display()
        ));
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) => {
            return Err(format!(
                "{}: directory {}: {e}",
                path.display(),
                dir.display()
            ))
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "{}: {} is not a directory",
                path.display(),
                dir.display()
            ))
        }
        Ok(_) => {}
    }
    if !writable(dir) {
        return Err(format!(
            "{}: cannot create a socket in {}: {}",
            path.display(),
            dir.display(),
            io::Error::last_os_error()
        ));
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            Err(format!("{} exists and is not a socket", path.display()))
        }
        _ => Ok(()),
    }
}

/// Whether this process may create files in `dir` (write and search permission).
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(dir) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `dir` is a NUL-terminated string that lives across the call.
    unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

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

    #[test]
    fn check_refuses_what_binding_would() {
        let dir = std::env::temp_dir().join(format!("glia-unix-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(check(&dir.join("glia.sock")), Ok(()));
        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert_eq!(check(&stale), Ok(()));
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let refused = |path: &Path, says: &str| {
            let e = check(path).unwrap_err();
            assert!(e.contains(says), "{}: {e}", path.display());
        };
        refused(&file, "exists and is not a socket");
        refused(&dir, "exists and is not a socket");
        refused(&dir.join("absent/glia.sock"), "No such file or directory");
        refused(&file.join("glia.sock"), "is not a directory");
        let long = dir.join("x".repeat(MAX_PATH));
        refused(&long, "a Unix socket's path can have at most 107");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
