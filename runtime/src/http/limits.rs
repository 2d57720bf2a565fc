//! How many HTTP connections glia serves at once. Each connection holds a file descriptor, so
//! the cap must fit under the process's open-file limit: otherwise a flood of connections
//! leaves glia none for its own files, NATS and modules, and it stops accepting anything.

/// Descriptors kept for glia itself (standard streams, logs, module threads' runtimes, NATS,
/// the OTLP exporter, modules' outgoing HTTP).
pub const RESERVED_FILES: u64 = 256;

/// The process's open-file limit, soft and hard.
fn open_file_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives for the call.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Checks that `max_connections` connections and glia's own files fit under the hard
/// open-file limit (the soft one is raised to it when the server starts).
pub fn check_max_connections(max_connections: usize) -> Result<(), String> {
    let Some(limit) = open_file_limit() else {
        return Ok(());
    };
    let needed = max_connections as u64 + RESERVED_FILES;
    if needed > limit.rlim_max {
        return Err(format!(
            "{max_connections} connections need {needed} open files ({RESERVED_FILES} are kept \
             for glia itself), but the open-file limit is {} (`ulimit -Hn`; `LimitNOFILE=` \
             under systemd): lower max_connections or raise the limit",
            limit.rlim_max
        ));
    }
    Ok(())
}

/// Raises the soft open-file limit so `max_connections` connections and glia's own files fit
/// (up to the hard limit, which the config check holds the cap under), as Go's runtime
/// raises it for every server.
pub fn raise_open_file_limit(max_connections: usize) {
    let Some(mut limit) = open_file_limit() else {
        return;
    };
    let needed = max_connections as u64 + RESERVED_FILES;
    if limit.rlim_cur >= needed {
        return;
    }
    limit.rlim_cur = needed.min(limit.rlim_max);
    // SAFETY: setrlimit reads the struct it is given, which lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            wanted = needed,
            "cannot raise the open-file limit; a flood of connections may exhaust it"
        );
    }
}

/// Worker threads for the HTTP server, and the cap of each: actix counts connections per
/// worker, and the caps add up to at most `max_connections`.
pub fn workers_and_cap(workers: usize, max_connections: usize) -> (usize, usize) {
    let workers = workers.clamp(1, max_connections.max(1));
    (workers, (max_connections / workers).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_caps_add_up_to_at_most_the_total() {
        assert_eq!(workers_and_cap(2, 1000), (2, 500));
        assert_eq!(workers_and_cap(4, 1001), (4, 250));
        assert_eq!(workers_and_cap(8, 3), (3, 1));
        assert_eq!(workers_and_cap(0, 10), (1, 10));
    }

    #[test]
    fn a_cap_past_the_open_file_limit_is_refused() {
        let err = check_max_connections(usize::MAX / 2).unwrap_err();
        assert!(err.contains("open-file limit"), "{err}");
        check_max_connections(1).unwrap();
    }
}
