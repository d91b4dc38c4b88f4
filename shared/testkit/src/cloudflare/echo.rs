//! Public-IP echo servers: ipify-like (plain text) and `/cdn-cgi/trace`-like.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use crate::serve::{Serving, bind as bind_listener, lock, serve};

/// What an [`EchoServer`] answers like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    /// ipify: the address as plain text.
    Plain,
    /// `/cdn-cgi/trace`: `key=value` lines with `ip=`.
    Trace,
}

#[derive(Debug)]
struct EchoState {
    answer: Option<String>,
    warp: bool,
    hits: u64,
}

/// A public-IP echo server whose answer the test sets; stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    kind: EchoKind,
    state: Arc<Mutex<EchoState>>,
    /// Stops and joins the server thread when dropped.
    _serving: Serving,
}

/// Answers one request from the current state.
async fn reply(
    st: Arc<Mutex<EchoState>>,
    kind: EchoKind,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_owned())
        .unwrap_or_default();
    let mut g = lock(&st);
    g.hits += 1;
    let resp = match (&g.answer, kind) {
        (None, _) => Response::builder()
            .status(StatusCode::SERVICE_UNAVAILABLE)
            .body(Full::new(Bytes::from_static(b"down"))),
        (Some(a), EchoKind::Plain) => Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(a.clone()))),
        (Some(a), EchoKind::Trace) => Response::builder()
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(format!(
                "fl=1f1\nh={host}\nip={a}\nts=1700000000.000\nvisit_scheme=https\nuag=edge\ncolo=FRA\nsliver=none\nhttp=http/1.1\nloc=DE\ntls=TLSv1.3\nsni=plaintext\nwarp={}\ngateway=off\nrbi=off\nkex=X25519\n",
                if g.warp { "on" } else { "off" }
            )))),
    };
    resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl EchoServer {
    /// Starts on `bind` (in the calling thread's namespace), answering `answer`.
    pub fn start(bind: SocketAddr, kind: EchoKind, answer: &str) -> EchoServer {
        let (listener, addr) = bind_listener(bind, "the echo server");
        let state = Arc::new(Mutex::new(EchoState {
            answer: Some(answer.to_owned()),
            warp: false,
            hits: 0,
        }));
        let st = state.clone();
        let serving = serve(listener, None, move |req| reply(st.clone(), kind, req));
        EchoServer {
            addr,
            kind,
            state,
            _serving: serving,
        }
    }

    /// The URL to configure (`http://ADDR/` or `http://ADDR/cdn-cgi/trace`).
    pub fn url(&self) -> String {
        match self.kind {
            EchoKind::Plain => format!("http://{}/", self.addr),
            EchoKind::Trace => format!("http://{}/cdn-cgi/trace", self.addr),
        }
    }

    /// Changes the answer; `None` makes the server answer 503 ("down").
    pub fn set_answer(&self, answer: Option<&str>) {
        lock(&self.state).answer = answer.map(str::to_owned);
    }

    /// Makes a trace answer say `warp=on`.
    pub fn set_warp(&self, on: bool) {
        lock(&self.state).warp = on;
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        lock(&self.state).hits
    }
}
