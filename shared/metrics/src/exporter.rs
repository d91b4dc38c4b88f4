//! I/O: the HTTP exporter serving `GET /metrics` in the OpenMetrics text format.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::SharedRegistry;

/// Content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// Binding the listen address failed.
    #[error("cannot listen for metrics on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Bounds on what clients can hold: the exporter must never starve its daemon of descriptors
/// (edge-fw needs some to restore its table) however many local clients connect and idle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed on accept.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also bounds an idle keep-alive).
    pub header_timeout: Duration,
    /// Longest a connection is kept; then it is closed after the request in flight.
    pub lifetime: Duration,
}

impl Default for Limits {
    /// Enough for a few Prometheus servers and curl; a scrape keeps its connection alive
    /// between scrapes (up to `lifetime`), so `header_timeout` exceeds no usual interval
    /// only for the first request: later ones reconnect once the idle connection closes.
    fn default() -> Limits {
        Limits {
            max_connections: 16,
            header_timeout: Duration::from_secs(5),
            lifetime: Duration::from_secs(300),
        }
    }
}

/// Binds `addr` and serves the registry until the task is dropped. Returns the bound address
/// (useful with port 0) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    registry: SharedRegistry,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ExporterError> {
    serve_with(addr, registry, Limits::default()).await
}

/// [`serve`] with explicit [`Limits`].
pub async fn serve_with(
    addr: SocketAddr,
    registry: SharedRegistry,
    limits: Limits,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ExporterError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ExporterError::Bind { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let task = tokio::spawn(async move {
        let mut refused: u64 = 0;
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refused += 1;
                // One line per power of two: a flood does not flood the journal.
                if refused.is_power_of_two() {
                    tracing::warn!(
                        %peer,
                        refused,
                        max = limits.max_connections,
                        "metrics exporter: too many connections; closing new ones"
                    );
                }
                drop(stream);
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = service_fn(move |req| handle(req, registry.clone()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                let end = tokio::time::sleep(limits.lifetime);
                tokio::pin!(end);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = &mut end => {
                        conn.as_mut().graceful_shutdown();
                        match tokio::time::timeout(limits.header_timeout, conn.as_mut()).await {
                            Ok(r) => r,
                            Err(_) => Ok(()),
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
            });
        }
    });
    Ok((bound, task))
}

async fn handle(
    req: Request<Incoming>,
    registry: SharedRegistry,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let resp = |status: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = ctype.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => match crate::encode(&registry) {
            Ok(body) => resp(StatusCode::OK, CONTENT_TYPE, body),
            Err(_) => resp(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding failed\n".into(),
            ),
        },
        (&Method::GET, "/") => resp(
            StatusCode::OK,
            "text/plain",
            "edge metrics exporter: see /metrics\n".into(),
        ),
        _ => resp(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn serves_build_info_over_http() {
        let reg = crate::new_registry();
        crate::common::CommonMetrics::register(&mut reg.write(), "fw");
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap(), reg).await.unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(body.contains("openmetrics-text"), "{body}");
        assert!(
            body.contains("edge_build_info{role=\"fw\",version=\""),
            "{body}"
        );
        assert!(
            body.contains("edge_config_reload_failures_total 0"),
            "{body}"
        );
        task.abort();
    }

    /// Reads until the server closes; `None` when it is still open after `within`.
    async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        match tokio::time::timeout(within, s.read_to_end(&mut buf)).await {
            Ok(_) => Some(buf),
            Err(_) => None,
        }
    }

    #[tokio::test]
    async fn idle_clients_cannot_hold_more_than_the_cap_nor_longer_than_the_header_timeout() {
        let reg = crate::new_registry();
        crate::common::CommonMetrics::register(&mut reg.write(), "fw");
        let limits = Limits {
            max_connections: 4,
            header_timeout: Duration::from_millis(400),
            lifetime: Duration::from_secs(60),
        };
        let (addr, task) = serve_with("127.0.0.1:0".parse().unwrap(), reg, limits)
            .await
            .unwrap();
        // Four clients connect and send nothing: they take every slot.
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A fifth is closed at once, before it sends anything.
        let mut fifth = tokio::net::TcpStream::connect(addr).await.unwrap();
        let got = closed_within(&mut fifth, Duration::from_millis(300)).await;
        assert_eq!(
            got,
            Some(Vec::new()),
            "over the cap a connection is closed at once"
        );
        // The idle ones are closed once the header timeout passes.
        for s in &mut idle {
            let got = closed_within(s, Duration::from_secs(3)).await;
            assert!(
                got.is_some(),
                "an idle client kept its connection past the header timeout"
            );
        }
        // Their slots are free again: a scrape is served.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let body = closed_within(&mut s, Duration::from_secs(3)).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        task.abort();
    }
}
