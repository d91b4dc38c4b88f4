//! Who may talk to a control socket, with real users: a member of the operator group reads
//! and is refused changes, anyone else cannot connect, and edgectl's client refuses to talk
//! to a process that put a socket where only the daemon (or root) should.
//!
//! The other users are this test binary run again (an ignored test as its entry point) with
//! its uid, gid and groups changed before `exec`. Needs root.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use edge_config::Role;
use edge_ipc::proto::{ErrorCode, Request, Response};
use edge_ipc::server::{Incoming, Policy, bind_with};
use edge_ipc::{Client, ClientError};

const OPERATORS: u32 = 54321;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users: run it as root (sudo)"
    );
}

/// This test binary again, as `uid:gid` with `groups`, running the ignored test `entry`.
fn as_user(uid: u32, gid: u32, groups: &[u32], entry: &str, arg: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--ignored",
        "--exact",
        entry,
        "--nocapture",
        "--test-threads=1",
    ])
    .env("EDGE_IPC_CHILD", arg)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let groups: Vec<libc::gid_t> = groups.to_vec();
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c
}

/// A child process, killed and reaped when the test ends, also when it fails.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a child prints before its answer (the test harness prints around it).
const MARK: &str = "CHILD: ";

/// The child's first answer.
fn first_line(child: &mut Child) -> String {
    let mut r = BufReader::new(child.stdout.as_mut().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        let l = line.trim();
        if let Some((_, said)) = l.split_once(MARK) {
            return said.to_owned();
        }
        line.clear();
    }
    String::new()
}

fn open_dir(path: &Path, mode: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A daemon stand-in: answers status and reload through the real server.
fn serve(path: PathBuf, policy: Policy) -> (tokio::runtime::Runtime, tokio::task::JoinHandle<()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Incoming>(4);
    // The accept task runs on `rt` until the runtime is dropped.
    let _accept = rt.block_on(bind_with(&path, tx, policy)).unwrap();
    let loop_ = rt.spawn(async move {
        while let Some(Incoming { request, reply }) = rx.recv().await {
            let _ = reply.send(Response::Done {
                message: format!("did {}", request.kind()),
                detail: serde_json::Value::Null,
            });
        }
    });
    (rt, loop_)
}

/// Child entry: sends one request (`PATH|status` or `PATH|reload`) and prints the outcome.
#[test]
#[ignore = "entry point of the child processes of the other tests"]
fn child_client() {
    let Ok(arg) = std::env::var("EDGE_IPC_CHILD") else {
        return;
    };
    let (path, req) = arg.split_once('|').unwrap();
    let req = if req == "reload" {
        Request::Reload
    } else {
        Request::Status
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = match rt.block_on(Client::new(Role::Fw, path).request(req)) {
        Ok(Response::Done { message, .. }) => format!("done: {message}"),
        Ok(Response::Error { code, message }) => format!("error {code:?}: {message}"),
        Ok(other) => format!("other: {other:?}"),
        Err(ClientError::PermissionDenied { .. }) => "connect: permission denied".to_owned(),
        Err(e) => format!("client error: {e}"),
    };
    println!("{MARK}{out}");
}

/// Child entry: an impostor listening at `PATH`, answering every request with a pong.
#[test]
#[ignore = "entry point of the child processes of the other tests"]
fn child_impostor() {
    let Ok(path) = std::env::var("EDGE_IPC_CHILD") else {
        return;
    };
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    println!("{MARK}listening");
    std::io::stdout().flush().unwrap();
    for conn in l.incoming() {
        let mut s = conn.unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        let _ = s.write_all(
            b"{\"version\":1,\"response\":{\"type\":\"done\",\"message\":\"confirmed\"}}\n",
        );
    }
}

#[test]
fn an_operator_reads_but_may_not_change_and_a_stranger_cannot_connect() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    open_dir(dir.path(), 0o755);
    let path = dir.path().join("fw/control.sock");
    let (_rt, _loop) = serve(
        path.clone(),
        Policy {
            own_uid: 0,
            operators: Some(OPERATORS),
        },
    );
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), OPERATORS);

    let ask = |uid, groups: &[u32], req: &str| {
        let out = as_user(
            uid,
            uid,
            groups,
            "child_client",
            &format!("{}|{req}", path.display()),
        )
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| Some(l.split_once(MARK)?.1.to_owned()))
            .unwrap_or_default()
    };
    assert_eq!(ask(54001, &[OPERATORS], "status"), "done: did status");
    let refused = ask(54001, &[OPERATORS], "reload");
    assert!(
        refused.starts_with(&format!("error {:?}", ErrorCode::PermissionDenied))
            && refused.contains("only root"),
        "{refused}"
    );
    assert_eq!(ask(54002, &[], "status"), "connect: permission denied");
    // Root, and the daemon's own user, may do anything.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt
        .block_on(Client::new(Role::Fw, &path).request(Request::Reload))
        .unwrap();
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
}

#[test]
fn the_client_refuses_a_socket_put_there_by_another_user() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // A shared directory another daemon's user can write (the layout before each daemon had
    // its own): the impostor's socket is there, but the directory is root's.
    let shared = dir.path().join("shared");
    open_dir(&shared, 0o777);
    let sock = shared.join("control.sock");
    let mut imp = Kid(
        as_user(54003, 54003, &[], "child_impostor", sock.to_str().unwrap())
            .spawn()
            .unwrap(),
    );
    assert_eq!(first_line(&mut imp.0), "listening");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(Client::new(Role::Fw, &sock).request(Request::Confirm));
    drop(imp);
    match r {
        Err(e @ ClientError::Impostor { uid: 54003, .. }) => {
            assert!(e.to_string().contains("is not edge-fw"), "{e}")
        }
        other => panic!("talked to the impostor: {other:?}"),
    }

    // The same process in a directory that is its own (a unit's RuntimeDirectory=) is the
    // daemon: answered.
    let own = dir.path().join("own");
    open_dir(&own, 0o755);
    std::os::unix::fs::chown(&own, Some(54003), Some(54003)).unwrap();
    let sock = own.join("control.sock");
    let mut d = Kid(
        as_user(54003, 54003, &[], "child_impostor", sock.to_str().unwrap())
            .spawn()
            .unwrap(),
    );
    assert_eq!(first_line(&mut d.0), "listening");
    let r = rt.block_on(Client::new(Role::Fw, &sock).request(Request::Status));
    drop(d);
    assert!(
        matches!(&r, Ok(Response::Done { message, .. }) if message == "confirmed"),
        "{r:?}"
    );
}
