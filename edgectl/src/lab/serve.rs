//! The lab's stand-ins for the world around the host, run as processes inside its
//! namespaces: in `inet`, the Cloudflare API test server (HTTPS, validating every request
//! against Cloudflare's OpenAPI description), public-IP echo services that answer with the
//! caller's address as they see it (so the ISP router's NAT decides what they say), and a
//! webhook receiver (HTTPS with its own test CA) that writes every notification it gets to
//! `notify-events.jsonl`; in `lb`, the HAProxy VIPs' listeners.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use edge_testkit::cloudflare::{CfOptions, CfServer};
use edge_testkit::receiver::{Answer, Receiver, ReceiverOptions};

use super::net;

/// Answers one plain-text echo request with the caller's address (ipify style) or in the
/// `/cdn-cgi/trace` format.
fn echo_conn(mut s: TcpStream, peer: SocketAddr, trace: bool) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut host = String::new();
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" || line == "\n" {
            break;
        }
        if let Some(h) = line.to_ascii_lowercase().strip_prefix("host:") {
            host = h.trim().split(':').next().unwrap_or_default().to_owned();
        }
        line.clear();
    }
    let ip = peer.ip();
    let body = if trace {
        format!(
            "fl=1f1\nh={host}\nip={ip}\nts=1700000000.000\nvisit_scheme=http\nuag=edge-lab\ncolo=LAB\nhttp=http/1.1\nloc=DE\ntls=off\nsni=off\nwarp=off\ngateway=off\n"
        )
    } else {
        format!("{ip}")
    };
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A listener serving `handle` on its own threads.
fn listen(
    addr: &str,
    handle: fn(TcpStream, SocketAddr, &str),
    tag: &'static str,
) -> anyhow::Result<()> {
    let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = addr.to_owned();
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let peer = conn
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            let local = local.clone();
            thread::spawn(move || handle(conn, peer, &local));
        }
        let _ = tag;
    });
    Ok(())
}

/// The file (in the lab's directory) where the webhook receiver appends each request: one
/// JSON object per line, `{"method", "path", "body"}`.
pub const NOTIFY_EVENTS: &str = "notify-events.jsonl";

/// The file (in the lab's directory) holding how many writes the Cloudflare test server
/// received so far.
pub const CF_WRITES: &str = "cf-writes";

/// The `inet` services; blocks forever (the lab ends it by PID).
pub fn inet(dir: &Path, token: &str) -> anyhow::Result<()> {
    let cf = CfServer::start(CfOptions {
        bind: format!("{}:443", net::API_IP).parse()?,
        token: token.to_owned(),
        tls_names: Some(vec![net::API_IP.to_owned()]),
    });
    // The origin lock's list of ranges: the ones edge ships with.
    cf.set_ips(
        edge_config::fw::CLOUDFLARE_V4,
        edge_config::fw::CLOUDFLARE_V6,
    );
    let zone = cf.add_zone("example.com");
    std::fs::write(dir.join("ca.pem"), cf.ca_pem().unwrap_or_default())
        .context("cannot write the test CA")?;
    std::fs::write(dir.join("zone-id"), &zone)?;
    listen(
        &format!("{}:80", net::ECHO_IPS[0]),
        |s, p, _| echo_conn(s, p, false),
        "echo",
    )?;
    listen(
        &format!("{}:80", net::ECHO_IPS[1]),
        |s, p, _| echo_conn(s, p, true),
        "trace",
    )?;
    listen(
        &format!("{}:80", net::ECHO_IPS[2]),
        |s, p, _| echo_conn(s, p, false),
        "echo2",
    )?;
    let hook = Receiver::start(ReceiverOptions {
        bind: format!("{}:443", net::HOOK_IP).parse()?,
        tls_names: Some(vec![net::HOOK_IP.to_owned()]),
        answer: Answer::Ok,
        log: Some(dir.join(NOTIFY_EVENTS)),
    });
    std::fs::write(dir.join("notify-ca.pem"), hook.ca_pem().unwrap_or_default())
        .context("cannot write the webhook receiver's test CA")?;
    std::fs::write(dir.join("inet.ready"), "")?;
    eprintln!(
        "lab inet services up: Cloudflare API https://{}/client/v4 (zone {zone}), webhook receiver https://{}/hook",
        net::API_IP,
        net::HOOK_IP
    );
    // Every write the Cloudflare test server received, counted for the lab's checks.
    let mut last = usize::MAX;
    loop {
        thread::sleep(Duration::from_millis(100));
        let writes = cf.log().iter().filter(|l| l.is_write()).count();
        if writes != last {
            last = writes;
            let _ = edge_ipc::follow::write_atomic(
                &dir.join(CF_WRITES),
                format!("{writes}\n").as_bytes(),
            );
        }
        // Keep the servers alive; the lab stops this process by PID.
        let _ = (cf.addr(), hook.addr());
    }
}

/// A VIP listener: an HTTP request gets `200` naming the VIP and port; anything else is
/// echoed back byte for byte (long-lived streams for the continuity tests).
fn vip_conn(mut s: TcpStream, _peer: SocketAddr, local: &str) {
    let mut first = [0u8; 4];
    let n = match s.peek(&mut first) {
        Ok(n) => n,
        Err(_) => return,
    };
    if n >= 4 && (&first == b"GET " || &first == b"HEAD") {
        let mut reader = BufReader::new(match s.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        });
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line == "\r\n" || line == "\n" {
                break;
            }
            line.clear();
        }
        let body = format!("edge lab: {local} answered\n");
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The `lb` services: the ingress VIP on 80 and 443, the API VIP on 6443; blocks forever.
pub fn lb(dir: &Path) -> anyhow::Result<()> {
    for addr in [
        format!("{}:80", net::INGRESS_VIP),
        format!("{}:443", net::INGRESS_VIP),
        format!("{}:6443", net::API_VIP),
    ] {
        listen(&addr, vip_conn, "vip")?;
    }
    std::fs::write(dir.join("lb.ready"), "")?;
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
