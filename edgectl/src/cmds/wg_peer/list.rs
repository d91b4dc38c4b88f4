//! `edgectl wg peer list`: the peers of the file, with what a running edge-wg says of them.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use edge_util::unix_now_i64;

use super::{live_status, load_current, wg_section};
use crate::Global;

/// One line of `peer list`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    public_key: String,
    allowed_ips: Vec<String>,
    latest_handshake: Option<u64>,
    rx_bytes: Option<u64>,
    tx_bytes: Option<u64>,
    expires: Option<String>,
    expired: bool,
}

fn ago(now: u64, t: u64) -> String {
    if t == 0 {
        return "never".into();
    }
    let d = now.saturating_sub(t);
    humantime::format_duration(Duration::from_secs(d)).to_string() + " ago"
}

fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub(super) async fn list(g: &Global) -> anyhow::Result<ExitCode> {
    let (_, _, cfg) = match load_current(g) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let wg = wg_section(&cfg)?;
    let live = live_status(g).await;
    let now = unix_now_i64();
    let rows: Vec<Row> = wg
        .peers
        .iter()
        .map(|p| {
            let key = p.public_key.to_base64();
            let lp = live
                .as_ref()
                .and_then(|s| s.peers.iter().find(|x| x.public_key == key));
            Row {
                name: p.name.clone(),
                public_key: key.clone(),
                allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                latest_handshake: lp.map(|x| x.latest_handshake),
                rx_bytes: lp.map(|x| x.rx_bytes),
                tx_bytes: lp.map(|x| x.tx_bytes),
                expires: p.expires.map(|e| e.to_rfc3339()),
                expired: p.expires.is_some_and(|e| e.unix() <= now),
            }
        })
        .collect();
    if g.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![[
        "NAME".to_owned(),
        "ADDRESS".to_owned(),
        "LAST HANDSHAKE".to_owned(),
        "TRANSFER (rx/tx)".to_owned(),
        "EXPIRES".to_owned(),
    ]];
    for r in &rows {
        let (hs, tr) = match (live.is_some(), r.latest_handshake) {
            (false, _) => ("-".to_owned(), "-".to_owned()),
            (true, None) => ("(not loaded)".to_owned(), "-".to_owned()),
            (true, Some(t)) => (
                ago(now as u64, t),
                format!(
                    "{} / {}",
                    size(r.rx_bytes.unwrap_or(0)),
                    size(r.tx_bytes.unwrap_or(0))
                ),
            ),
        };
        let exp = match (&r.expires, r.expired) {
            (None, _) => "never".to_owned(),
            (Some(e), true) => format!("EXPIRED {e}"),
            (Some(e), false) => e.clone(),
        };
        table.push([r.name.clone(), r.allowed_ips.join(","), hs, tr, exp]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    print!("{out}");
    if live.is_none() {
        eprintln!("edgectl: edge-wg is not running: handshakes and transfer are unknown");
    }
    Ok(ExitCode::SUCCESS)
}
