//! Talking to a daemon over its control socket, and printing common answers.

use std::process::ExitCode;

use edge_config::Role;
use edge_ipc::proto::{DaemonStatus, Response};
use edge_ipc::{Client, Request};

use crate::Global;

/// The control socket of `role`: `<global.runtime_dir>/<role>/control.sock` from the config
/// file (read even when the rest of the file is invalid), else under `/run/edge`.
pub fn client(role: Role, g: &Global) -> Client {
    let runtime_dir = std::fs::read_to_string(g.config_path())
        .map(|t| edge_config::peek_runtime_dir(&t))
        .unwrap_or_else(|_| edge_config::Global::default().runtime_dir);
    Client::new(role, edge_config::socket_path(&runtime_dir, role))
}

/// Sends `req` to `role` and returns the answer.
pub async fn ask(role: Role, g: &Global, req: Request) -> anyhow::Result<Response> {
    Ok(client(role, g).request(req).await?)
}

/// Prints a plain answer (done / error) and maps it to an exit code.
pub fn print_response(resp: &Response, g: &Global) -> anyhow::Result<ExitCode> {
    if g.json {
        println!("{}", serde_json::to_string_pretty(resp)?);
    }
    Ok(match resp {
        Response::Error { message, .. } => {
            if !g.json {
                eprintln!("{}", message.trim_end());
            }
            ExitCode::from(1)
        }
        Response::Done { message, .. } => {
            if !g.json {
                println!("{message}");
            }
            ExitCode::SUCCESS
        }
        Response::Pong { role, version, pid } => {
            if !g.json {
                println!("edge-{role} {version} (pid {pid}) is alive");
            }
            ExitCode::SUCCESS
        }
        Response::Status(st) => {
            if !g.json {
                print!("{}", crate::cmds::status::render_one(st));
            }
            ExitCode::SUCCESS
        }
    })
}

/// Human rendering of the common part of a status.
pub fn render_status(st: &DaemonStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "edge-{} {} (pid {}): {}",
        st.role,
        st.version,
        st.pid,
        if st.ready { "ready" } else { "starting" }
    );
    let _ = writeln!(
        out,
        "  config: {} (generation {}{})",
        st.config_path,
        st.config_generation,
        if st.configured {
            ""
        } else {
            ", no section: idle"
        }
    );
    if let Some(r) = &st.last_reload {
        let _ = writeln!(
            out,
            "  last reload: {}",
            if r.ok {
                "ok"
            } else {
                "REFUSED (running the previous configuration)"
            }
        );
    }
    if let Some(r) = &st.last_run {
        let _ = writeln!(
            out,
            "  last run: {} — {} ({} ms)",
            if r.ok { "ok" } else { "FAILED" },
            r.summary,
            r.duration_ms
        );
    }
    for e in &st.recent_errors {
        let first = e.message.lines().next().unwrap_or_default();
        let _ = writeln!(out, "  error: {first}");
    }
    out
}

/// `edgectl <role> status|reload|ping` through the control socket.
pub async fn simple(role: Role, g: &Global, req: Request) -> anyhow::Result<ExitCode> {
    let resp = ask(role, g, req).await?;
    print_response(&resp, g)
}
