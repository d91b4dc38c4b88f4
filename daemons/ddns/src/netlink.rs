//! I/O: rtnetlink — the addresses of the WAN interface (the `interface` detection source)
//! and a watch on its address/link events (the event trigger). Reading both needs no
//! privilege.

use futures::{StreamExt as _, TryStreamExt as _};
use rtnetlink::constants::{RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_LINK};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::sys::{AsyncSocket as _, SocketAddr};
use tokio::sync::mpsc;

use crate::model::IfaceAddr;

/// Why a netlink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket cannot be opened.
    #[error("cannot open a netlink socket")]
    Open(#[source] std::io::Error),
    /// Subscribing to address/link events failed.
    #[error("cannot subscribe to address and link events")]
    Subscribe(#[source] std::io::Error),
    /// The interface does not exist.
    #[error("interface {name} does not exist")]
    NoSuchInterface {
        /// The interface.
        name: String,
    },
    /// A dump failed.
    #[error("cannot read the addresses of {name}")]
    Dump {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Reads the addresses of `name` with their flags. Equivalent to: `ip -j addr show dev NAME`.
pub async fn interface_addresses(name: &str) -> Result<Vec<IfaceAddr>, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    let task = tokio::spawn(conn);
    let res = async {
        let link = handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        let index = match link {
            Ok(Some(l)) => l.header.index,
            Ok(None) | Err(_) => {
                return Err(NetlinkError::NoSuchInterface {
                    name: name.to_owned(),
                });
            }
        };
        let mut out = Vec::new();
        let mut dump = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(msg) = dump.try_next().await.map_err(|source| NetlinkError::Dump {
            name: name.to_owned(),
            source,
        })? {
            let mut ip = None;
            let mut flags = u32::from(msg.header.flags.bits());
            for a in &msg.attributes {
                match a {
                    // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is the
                    // peer on point-to-point links); IPv6 has only IFA_ADDRESS.
                    AddressAttribute::Local(l) => ip = Some(*l),
                    AddressAttribute::Address(l) if ip.is_none() => ip = Some(*l),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                out.push(IfaceAddr { ip, flags });
            }
        }
        Ok(out)
    }
    .await;
    task.abort();
    res
}

/// Watches address and link events of interface `name`; each relevant event sends `()`.
/// Equivalent to: `ip monitor link address dev NAME`.
pub fn watch(name: &str) -> Result<mpsc::Receiver<()>, NetlinkError> {
    let (mut conn, handle, mut messages) =
        rtnetlink::new_connection().map_err(NetlinkError::Open)?;
    let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    conn.socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))
        .map_err(NetlinkError::Subscribe)?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel(8);
    let name = name.to_owned();
    tokio::spawn(async move {
        // The index is learnt from the first dump and from link events, so an interface that
        // appears later (a PPPoE link coming up) is followed too.
        let mut index = handle
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
            .ok()
            .flatten()
            .map(|l| l.header.index);
        while let Some((msg, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(inner) = msg.payload else {
                continue;
            };
            let relevant = match &inner {
                RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l) => {
                    let named = l
                        .attributes
                        .iter()
                        .any(|a| matches!(a, LinkAttribute::IfName(n) if *n == name));
                    if named {
                        index = Some(l.header.index);
                    }
                    named
                }
                RouteNetlinkMessage::NewAddress(a) | RouteNetlinkMessage::DelAddress(a) => {
                    Some(a.header.index) == index
                }
                _ => false,
            };
            // A full channel already holds a pending trigger: dropping this one is fine.
            if relevant && tx.try_send(()).is_err() && tx.is_closed() {
                break;
            }
        }
    });
    Ok(rx)
}
