//! Where `glia serve` listens, as an operator deploys it: a warning when the API is open
//! beyond loopback without a token, and a Unix socket whose mode and group let a homeserver
//! running as another user in that group connect, and nobody else.

mod support;

use glia_tests::process::GliaProcess;
use std::process::Command;
use support::TempFile;

const OPEN_WARNING: &str = "glia listens beyond loopback without an auth token";

#[actix_rt::test]
async fn an_api_open_beyond_loopback_without_a_token_is_warned_about() {
    let plain = TempFile::new("open.yaml", "modules:\n  - module: demo\n");
    let log = start_up_log(&plain, "0.0.0.0:0").await;
    assert!(log.contains(OPEN_WARNING), "{log}");
    let log = start_up_log(&plain, "127.0.0.1:0").await;
    assert!(!log.contains(OPEN_WARNING), "loopback is not open:\n{log}");
    let token = TempFile::new(
        "token.yaml",
        "auth_token: s3cret\nmodules:\n  - module: demo\n",
    );
    let log = start_up_log(&token, "0.0.0.0:0").await;
    assert!(!log.contains(OPEN_WARNING), "a token guards it:\n{log}");
}

/// The start-up log of `glia serve` with `config`, listening on `listen`.
async fn start_up_log(config: &TempFile, listen: &str) -> String {
    let path = config.path().to_str().unwrap();
    let args = ["serve", "--config", path, "--listen", listen];
    let mut process = GliaProcess::spawn(&args, &[], false);
    process.listening("glia serving on").await;
    process.terminate_with_log().1
}

/// Runs `command` and says whether it succeeded; panics with a message saying how to get it
/// when it cannot run.
fn run(command: &mut Command) -> bool {
    let shown = format!("{command:?}");
    command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"))
        .success()
}

/// A system group and two users, one in it and one not: the test needs root (CI runs as root)
/// and useradd/groupadd (Debian's passwd package).
fn users() -> (&'static str, &'static str, &'static str) {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test creates users and connects as them: run it as root (tests/run-all does in CI)"
    );
    let (group, inside, outside) = ("glia-sock-test", "glia-sock-in", "glia-sock-out");
    let _ = Command::new("groupadd").args(["--system", group]).status();
    for user in [inside, outside] {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                user,
            ])
            .status();
    }
    assert!(run(
        Command::new("usermod").args(["-a", "-G", group, inside])
    ));
    (group, inside, outside)
}

/// Whether `user` can connect to the Unix socket at `path`.
fn connects_as(user: &str, path: &str) -> bool {
    let script = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])";
    run(Command::new("runuser").args(["-u", user, "--", "python3", "-c", script, path]))
}

#[actix_rt::test]
async fn the_unix_socket_takes_its_mode_and_group_from_the_config() {
    let (group, inside, outside) = users();
    let dir = TempFile::unused_path("sockdir");
    std::fs::create_dir_all(&dir).unwrap();
    // Others may walk into the directory; the socket itself decides who connects.
    assert!(run(Command::new("chmod").arg("0755").arg(&dir)));
    let socket = dir.join("glia.sock");
    let socket_text = socket.display().to_string();
    let config = TempFile::new(
        "unix.yaml",
        &format!(
            "listen_unix: {socket_text}\nlisten_unix_mode: \"0660\"\nlisten_unix_group: {group}\nmodules:\n  - module: demo\n"
        ),
    );
    let (process, _) = GliaProcess::serve(config.path(), &[], &[], false).await;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert!(
        connects_as(inside, &socket_text),
        "a member of {group} connects"
    );
    assert!(
        !connects_as(outside, &socket_text),
        "a user outside {group} is refused"
    );
    assert_ne!(meta.gid(), 0);
    process.terminate_with_log();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unknown_socket_group_or_a_bad_mode_is_a_config_error() {
    let registry = glia_modules::builtin_registry();
    let error_of = |yaml: &str| match glia_runtime::app::load_str(yaml, "unix.yaml", &registry) {
        Ok(_) => panic!("loaded: {yaml}"),
        Err(e) => e,
    };
    let err = error_of("listen_unix: /tmp/x.sock\nlisten_unix_group: no-such-group-glia\n");
    assert_eq!(err.key, "listen_unix_group", "{err}");
    assert!(err.message.contains("no group"), "{err}");
    let err = error_of("listen_unix_mode: \"0999\"\n");
    assert_eq!(err.key, "listen_unix_mode", "{err}");
}
