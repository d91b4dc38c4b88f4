//! I/O: interface addresses, MTU, link state and the routes of the AllowedIPs, over
//! rtnetlink. Every operation is idempotent ("already exists" is success).

use std::net::IpAddr;

use futures::TryStreamExt as _;
use ipnet::IpNet;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tracing::{info, warn};

/// Errors of the netlink operations.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening the rtnetlink socket failed.
    #[error("failed to open an rtnetlink socket")]
    OpenSocket(#[source] std::io::Error),
    /// The interface does not exist.
    #[error("interface {name} not found")]
    ResolveInterface {
        /// Interface name.
        name: String,
    },
    /// A request failed.
    #[error("failed to {action} on {name}")]
    Request {
        /// What was attempted (`set mtu 1420`).
        action: String,
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
}

/// A connection to rtnetlink, driven on the caller's tokio runtime.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

fn already_exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

fn not_found(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.raw_code() == -libc::ESRCH || m.raw_code() == -libc::ENOENT || m.raw_code() == -libc::EADDRNOTAVAIL)
}

impl Netlink {
    /// Opens the connection and spawns its driver task.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::OpenSocket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    async fn index(&self, name: &str) -> Result<u32, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(Some(m)) => Ok(m.header.index),
            _ => Err(NetlinkError::ResolveInterface {
                name: name.to_string(),
            }),
        }
    }

    /// Sets the MTU, adds the addresses and brings the link up.
    /// Equivalent to: `ip link set NAME mtu MTU up; ip addr add ADDR dev NAME`.
    pub async fn configure(
        &self,
        name: &str,
        mtu: u32,
        addresses: &[IpNet],
    ) -> Result<(), NetlinkError> {
        let idx = self.index(name).await?;
        let req = |action: String| {
            move |source| NetlinkError::Request {
                action,
                name: name.to_string(),
                source,
            }
        };
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(idx).mtu(mtu).up().build())
            .execute()
            .await
            .map_err(req(format!("set mtu {mtu} up")))?;
        for a in addresses {
            match self
                .handle
                .address()
                .add(idx, a.addr(), a.prefix_len())
                .execute()
                .await
            {
                Ok(()) => info!(interface = name, address = %a, "address added"),
                Err(e) if already_exists(&e) => {}
                Err(e) => return Err(req(format!("add address {a}"))(e)),
            }
        }
        Ok(())
    }

    /// Adds routes for `add` and deletes those of `del` via the interface. Default routes
    /// are skipped: a full tunnel needs policy routing that this daemon does not own.
    /// Equivalent to: `ip route replace NET dev NAME` / `ip route del NET dev NAME`.
    pub async fn sync_routes(
        &self,
        name: &str,
        add: &[IpNet],
        del: &[IpNet],
    ) -> Result<(), NetlinkError> {
        let idx = self.index(name).await?;
        for (net, adding) in del
            .iter()
            .map(|n| (n, false))
            .chain(add.iter().map(|n| (n, true)))
        {
            if net.prefix_len() == 0 {
                warn!(interface = name, route = %net, "default route in allowed ips not installed");
                continue;
            }
            let Ok(b) = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(net.addr(), net.prefix_len())
            else {
                continue;
            };
            let msg = b.output_interface(idx).build();
            let res = if adding {
                self.handle.route().add(msg).replace().execute().await
            } else {
                self.handle.route().del(msg).execute().await
            };
            match res {
                Ok(()) => info!(interface = name, route = %net, added = adding, "route changed"),
                Err(e) if !adding && not_found(&e) => {}
                Err(e) => {
                    let verb = if adding { "add" } else { "delete" };
                    return Err(NetlinkError::Request {
                        action: format!("{verb} route {net}"),
                        name: name.to_string(),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }
}
