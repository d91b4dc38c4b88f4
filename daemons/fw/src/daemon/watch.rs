//! The event threads: nf_tables notifications (foreign changes to our tables) and
//! rtnetlink address changes, reported to the event loop as [`Watch`]es.

use anyhow::Context as _;
use tokio::sync::mpsc;

use crate::events::{self, ForeignChange, Tracker};
use crate::origin::Ranges;

/// What the event threads report.
#[derive(Debug)]
pub(super) enum Watch {
    /// A transaction of someone else changed our tables.
    Foreign(ForeignChange),
    /// Notifications were lost (ENOBUFS): our tables must be re-read.
    Lost,
    /// An address was added or removed, or an interface changed.
    Addresses,
    /// A fetch of the origin lock's ranges ended.
    Ranges(Result<Ranges, String>),
}

/// True when `tid` is a thread of this process: the transaction was ours.
fn own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// Subscribes to nf_tables notifications on a blocking thread and reports, at the end of
/// each transaction (NEWGEN), foreign changes to our tables; our own commits (the thread is
/// ours, or the commit came through `own_port`) and other tables' changes cost nothing.
pub(super) fn watch_tables(tx: mpsc::UnboundedSender<Watch>, own_port: u32) -> anyhow::Result<()> {
    let sock = crate::nfnl::subscribe()
        .context("failed to subscribe to nf_tables events (NFNLGRP_NFTABLES)")?;
    std::thread::Builder::new()
        .name("nft-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            let mut tracker = Tracker::default();
            loop {
                let report = match crate::nfnl::recv_events(&sock, &mut buf) {
                    Ok(d) => events::parse(d)
                        .iter()
                        .filter_map(|e| {
                            tracker.feed(e, |tid, portid| {
                                own_thread(tid) || (portid != 0 && portid == own_port)
                            })
                        })
                        .map(Watch::Foreign)
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Events were lost, maybe mid-transaction: start over and re-read.
                        tracker = Tracker::default();
                        vec![Watch::Lost]
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "nf_tables event socket failed");
                        return;
                    }
                };
                for r in report {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
        })
        .context("failed to start the nf_tables event thread")?;
    Ok(())
}

/// Subscribes to address and link changes on a blocking thread (a forward without
/// `address` follows its interfaces' addresses).
pub(super) fn watch_addresses(tx: mpsc::UnboundedSender<Watch>) -> anyhow::Result<()> {
    let sock = crate::rt::subscribe_addresses()
        .context("failed to subscribe to address changes (rtnetlink)")?;
    std::thread::Builder::new()
        .name("rt-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(n) => {
                        let d = &buf[..n.min(buf.len())];
                        if crate::rt::is_address_change(d) && tx.send(Watch::Addresses).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // Lost notifications: look at the addresses anyway.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        if tx.send(Watch::Addresses).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "rtnetlink event socket failed");
                        return;
                    }
                }
            }
        })
        .context("failed to start the address event thread")?;
    Ok(())
}
