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
