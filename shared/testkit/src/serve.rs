//! What the test servers ([`crate::cloudflare::CfServer`], [`crate::cloudflare::EchoServer`],
//! [`crate::receiver::Receiver`]) share: a listener bound in the calling thread's namespace,
//! an HTTP/1.1 accept loop (optionally behind TLS with a fresh test CA) on a thread of its
//! own, and that thread stopped and joined on drop.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Locks a server's state, also when a handler panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A server certificate for some names, signed by a fresh test CA.
pub(crate) struct Tls {
    /// The CA's certificate (PEM), for the client to trust.
    pub(crate) ca_pem: String,
    /// Serves the certificate.
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

/// A fresh test CA and a server certificate for `names`, signed by it.
pub(crate) fn make_tls(names: &[String]) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(names.to_vec()).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let chain = vec![cert.der().clone()];
    let der_key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, der_key)
        .expect("server TLS config");
    Tls {
        ca_pem: ca_cert.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    }
}

/// Binds `bind` (non-blocking, for tokio) and returns the listener and its address;
/// panics naming `what` ("the echo server") when the address is taken.
pub(crate) fn bind(bind: SocketAddr, what: &str) -> (std::net::TcpListener, SocketAddr) {
    let listener = std::net::TcpListener::bind(bind)
        .unwrap_or_else(|e| panic!("cannot bind {what} to {bind}: {e}"));
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// A server's thread; dropping it stops the accept loop and joins the thread.
#[derive(Debug)]
pub(crate) struct Serving {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves HTTP/1.1 on `listener` (over TLS when `acceptor` is given) from a thread of its
/// own with a current-thread runtime; every request is answered by `handler`.
pub(crate) fn serve<H, F>(
    listener: std::net::TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handler: H,
) -> Serving
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stop_rx => break,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let answer = handler(req);
                        async move { Ok::<_, Infallible>(answer.await) }
                    });
                    match acceptor {
                        Some(acc) => {
                            if let Ok(tls) = acc.accept(stream).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .await;
                            }
                        }
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
            }
        });
    });
    Serving {
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}
