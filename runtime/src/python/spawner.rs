//! Starts host processes from one thread that lives as long as glia, with the kernel told to
//! kill each host when glia dies (`PR_SET_PDEATHSIG`).
//!
//! The kernel sends that signal when the *thread* that forked the child ends, not the
//! process: a host forked by a module's thread or a short-lived recycling thread would be
//! killed when that thread ends. Forking every host from this one thread ties each host's
//! life to glia's alone.

use std::io;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};

type Job = (Command, mpsc::Sender<io::Result<Child>>);

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Runs `command` (its pipes already set) from the spawner thread, with the parent-death
/// signal set in the child before it execs.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_glia(&mut command);
    let jobs = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("glia-py-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the host spawner thread starts");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    jobs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, tx))
        .map_err(|_| io::Error::other("the host spawner thread is gone"))?;
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the host spawner thread is gone")))
}

#[cfg(target_os = "linux")]
fn die_with_glia(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    let glia = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // glia died between the fork and the prctl: the signal will never come.
            if libc::getppid() as u32 != glia {
                return Err(io::Error::other("glia exited while starting the host"));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_glia(_: &mut Command) {
    // Elsewhere the host's own guard (it exits when its parent changes) is the only one.
}
