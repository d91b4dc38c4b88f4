//! [`Receiver`]: a local HTTP(S) server standing in for a notification target (a webhook,
//! an ntfy topic, a Healthchecks ping URL). It records every request it gets and answers as
//! the test says: 200, another status, or never (it holds the request open until released).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::serve::{Serving, bind, lock, make_tls, serve};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a small JSON body.
    Ok,
    /// This status, with a short text body.
    Status(u16),
    /// Never: the request stays open until [`Receiver::release`] (or the receiver stops).
    Hang,
    /// 500 for the first `n` requests, then 200.
    FailFirst(usize),
    /// This status, with the request's headers as the body (`name: value` lines), as some
    /// echo services do.
    EchoHeaders(u16),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `GET`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Settings of a [`Receiver`].
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Serve HTTPS with a fresh test CA; the certificate names these hosts/IPs.
    pub tls_names: Option<Vec<String>>,
    /// How to answer (changeable with [`Receiver::set_answer`]).
    pub answer: Answer,
    /// Append every request to this file, one JSON object per line (`method`, `path`,
    /// `body`: the body's JSON, or its text).
    pub log: Option<PathBuf>,
}

#[derive(Debug)]
struct State {
    answer: Answer,
    received: Vec<Received>,
    answered: usize,
}

/// The notification receiver; stops on drop.
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    scheme: &'static str,
    ca_pem: Option<String>,
    state: Arc<Mutex<State>>,
    holding: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
    /// Stops and joins the server thread when dropped, after `drop` released held requests.
    _serving: Serving,
}

/// Counts a held request while it is held, also when hyper drops it (client gone).
struct Held(Arc<AtomicUsize>);

impl Held {
    fn new(c: &Arc<AtomicUsize>) -> Held {
        c.fetch_add(1, Ordering::SeqCst);
        Held(c.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn log_line(path: &PathBuf, r: &Received) {
    let body = r
        .json()
        .unwrap_or_else(|| serde_json::Value::String(r.text()));
    let line = serde_json::json!({"method": r.method, "path": r.path, "body": body});
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    holding: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Notify>,
    log: Option<PathBuf>,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let echoed: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    let r = Received {
        method,
        path,
        headers,
        body,
    };
    if let Some(p) = &log {
        log_line(p, &r);
    }
    let answer = {
        let mut g = lock(&state);
        g.received.push(r);
        let a = match g.answer {
            Answer::FailFirst(n) if g.answered < n => Answer::Status(500),
            Answer::FailFirst(_) => Answer::Ok,
            a => a,
        };
        g.answered += 1;
        a
    };
    let status = match answer {
        Answer::Ok => StatusCode::OK,
        Answer::Status(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Answer::Hang => {
            let _held = Held::new(&holding);
            release.notified().await;
            StatusCode::OK
        }
        Answer::FailFirst(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::EchoHeaders(s) => {
            return Response::builder()
                .status(StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .body(Full::new(Bytes::from(echoed)))
                .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
        }
    };
    let body = if status.is_success() {
        Bytes::from_static(b"{\"ok\":true}")
    } else {
        Bytes::from(format!("test receiver says {}", status.as_u16()))
    };
    Response::builder()
        .status(status)
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl Receiver {
    /// Plain HTTP on `127.0.0.1:<free port>`.
    pub fn start_local(answer: Answer) -> Receiver {
        Receiver::start(ReceiverOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_names: None,
            answer,
            log: None,
        })
    }

    /// Starts the receiver on its own thread (in the calling thread's network namespace).
    pub fn start(opts: ReceiverOptions) -> Receiver {
        let tls = opts.tls_names.as_deref().map(make_tls);
        let (listener, addr) = bind(opts.bind, "the notification receiver");
        let state = Arc::new(Mutex::new(State {
            answer: opts.answer,
            received: Vec::new(),
            answered: 0,
        }));
        let holding = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let acceptor = tls.map(|t| t.acceptor);
        let (st, hold, rel, log) = (
            state.clone(),
            holding.clone(),
            release.clone(),
            opts.log.clone(),
        );
        let serving = serve(listener, acceptor, move |req| {
            handle(req, st.clone(), hold.clone(), rel.clone(), log.clone())
        });
        Receiver {
            addr,
            scheme: if ca_pem.is_some() { "https" } else { "http" },
            ca_pem,
            state,
            holding,
            release,
            _serving: serving,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URL on this receiver (`http://127.0.0.1:PORT/path`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The test CA's certificate (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Changes how the following requests are answered.
    pub fn set_answer(&self, answer: Answer) {
        lock(&self.state).answer = answer;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        lock(&self.state).received.len()
    }

    /// Requests held open right now (answer [`Answer::Hang`]), not yet released.
    pub fn holding(&self) -> usize {
        self.holding.load(Ordering::SeqCst)
    }

    /// Answers every held request with 200.
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    /// Waits until at least `n` requests arrived; false after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        crate::wait_for(timeout, || self.count() >= n).is_some()
    }
}

impl Drop for Receiver {
    /// Releases the held requests; then `_serving` drops, which stops and joins the thread.
    fn drop(&mut self) {
        self.release();
    }
}
