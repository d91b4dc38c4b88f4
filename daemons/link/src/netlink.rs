//! I/O: one rtnetlink connection that counts every write, and the errno view of the
//! kernel's answers ("already exists", "not found", "not supported") the apply layer needs.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use tokio::task::JoinHandle;

/// A failed netlink exchange.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened (not in a network namespace we may use, or no
    /// CAP_NET_ADMIN).
    #[error("cannot open a netlink route socket")]
    OpenSocket(#[source] io::Error),
    /// The connection task is gone.
    #[error("the netlink connection is closed")]
    Closed(#[source] rtnetlink::Error),
    /// The kernel answered with an error.
    #[error("the kernel refused the request")]
    Kernel(#[source] io::Error),
    /// The kernel answered with a message we did not expect.
    #[error("unexpected netlink answer: {what}")]
    Unexpected {
        /// What arrived.
        what: String,
    },
}

impl NetlinkError {
    /// The errno of a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// True when the object to create is already there.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the object to remove or change is already gone.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT | libc::ESRCH | libc::ENODEV | libc::EADDRNOTAVAIL)
        )
    }

    /// True when the kernel lacks the feature (`EOPNOTSUPP`).
    pub fn is_not_supported(&self) -> bool {
        self.errno() == Some(libc::EOPNOTSUPP)
    }
}

/// A route-netlink connection; clones share the socket and the write counter.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    writes: Arc<AtomicU64>,
    task: Arc<JoinHandle<()>>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // The last clone stops the connection task.
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Netlink {
    /// Opens a connection in the calling thread's network namespace and spawns its task on
    /// the current tokio runtime.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::OpenSocket)?;
        let task = tokio::spawn(conn);
        Ok(Netlink {
            handle,
            writes: Arc::new(AtomicU64::new(0)),
            task: Arc::new(task),
        })
    }

    /// The rtnetlink handle, for dumps.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Number of write requests sent so far on this connection.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Counts a write made outside netlink (a sysctl file).
    pub fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends one change request (with `extra` flags such as `NLM_F_CREATE`) and waits for
    /// its acknowledgement. Every call counts as one write.
    pub async fn write(
        &self,
        payload: RouteNetlinkMessage,
        extra: u16,
    ) -> Result<(), NetlinkError> {
        self.count_write();
        let mut req = NetlinkMessage::from(payload);
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(NetlinkError::Closed)?;
        while let Some(msg) = resp.next().await {
            if let NetlinkPayload::Error(e) = msg.payload
                && let Some(code) = e.code
            {
                return Err(NetlinkError::Kernel(io::Error::from_raw_os_error(
                    -code.get(),
                )));
            }
        }
        Ok(())
    }

    /// Sends one dump request and collects the answers.
    pub async fn dump(
        &self,
        payload: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let mut req = NetlinkMessage::from(payload);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut handle = self.handle.clone();
        let mut resp = handle.request(req).map_err(NetlinkError::Closed)?;
        let mut out = Vec::new();
        while let Some(msg) = resp.next().await {
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => out.push(m),
                NetlinkPayload::Error(e) => {
                    if let Some(code) = e.code {
                        return Err(NetlinkError::Kernel(io::Error::from_raw_os_error(
                            -code.get(),
                        )));
                    }
                }
                NetlinkPayload::Done(_) | NetlinkPayload::Noop => {}
                other => {
                    return Err(NetlinkError::Unexpected {
                        what: format!("{other:?}"),
                    });
                }
            }
        }
        Ok(out)
    }
}
