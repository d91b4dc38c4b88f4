//! I/O: looking up the peers' endpoint names, through the DNS servers of `[wg] resolvers`
//! or, without them, the system's (`/etc/resolv.conf`). Nothing is cached here: a name is
//! looked up on start, on reload, and when the peer's handshakes stop being answered
//! ([`crate::config::Reresolve`]), and each of those wants the answer of now.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// Errors of looking up an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system's resolver configuration could not be read (e.g. no /etc/resolv.conf).
    #[error(
        "cannot look up {host}: the system's DNS configuration could not be read ({reason}); set [wg] resolvers"
    )]
    SystemConfig {
        /// The name.
        host: String,
        /// Why.
        reason: String,
    },
    /// The query failed (timeout, refused, no such name).
    #[error("failed to look up {host}")]
    Lookup {
        /// The name.
        host: String,
        /// The cause.
        #[source]
        source: NetError,
    },
}

/// Looks up endpoint names (A, then AAAA).
#[derive(Clone)]
pub struct EndpointResolver {
    /// The resolver, or why there is none: a host without a readable resolv.conf still runs
    /// (only its endpoint names cannot be looked up).
    inner: Result<TokioResolver, String>,
}

impl std::fmt::Debug for EndpointResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointResolver")
    }
}

impl EndpointResolver {
    /// A resolver asking `servers` (UDP) or, when empty, the system's servers.
    pub fn new(servers: &[SocketAddr]) -> EndpointResolver {
        let provider = TokioRuntimeProvider::default();
        let builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| e.to_string())
        } else {
            let ns = servers
                .iter()
                .map(|s| {
                    let mut c = ConnectionConfig::udp();
                    c.port = s.port();
                    let mut ns = NameServerConfig::udp(s.ip());
                    ns.connections = vec![c];
                    ns
                })
                .collect();
            Ok(TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(ns),
                provider,
            ))
        };
        let inner = builder.and_then(|mut b| {
            let opts = b.options_mut();
            opts.cache_size = 0;
            opts.timeout = Duration::from_secs(2);
            opts.attempts = 2;
            // One address is enough: IPv4 first, IPv6 only when there is none.
            opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
            b.build().map_err(|e| e.to_string())
        });
        EndpointResolver { inner }
    }

    /// The address of `host:port` (an IP address is returned as it is).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        let resolver = self
            .inner
            .as_ref()
            .map_err(|reason| ResolveError::SystemConfig {
                host: host.to_owned(),
                reason: reason.clone(),
            })?;
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        let lookup =
            resolver
                .lookup_ip(fqdn.as_str())
                .await
                .map_err(|source| ResolveError::Lookup {
                    host: host.to_owned(),
                    source,
                })?;
        match lookup.iter().next() {
            Some(ip) => Ok(SocketAddr::new(ip, port)),
            None => Err(ResolveError::Lookup {
                host: host.to_owned(),
                source: NetError::from(format!("no A or AAAA record for {host}")),
            }),
        }
    }
}
