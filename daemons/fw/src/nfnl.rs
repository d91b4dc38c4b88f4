//! I/O: the one nf_tables netlink socket type (netlink-sys). It sends a transaction as one
//! batch the way `nft` does — the whole batch in one send after forcing the socket buffers
//! large enough, with extended acks on so a rejected message comes back with the kernel's
//! reason, each error mapped back to the operation that caused it — and reads the kernel's
//! tables with dump requests, telling which ruleset generation each reply was filled in.
//!
//! A batch sent without its trailing `NFNL_MSG_BATCH_END` is a kernel dry run: the kernel
//! checks every message, then aborts the transaction (what `nft --check` does).

use std::io;
use std::os::fd::AsFd as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};

use crate::codec::{self, Attrs, Msg};
use crate::txn::{Batch, Transaction};
use crate::uapi;

/// Errors talking to nf_tables.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netfilter netlink socket could not be opened or configured.
    #[error("cannot open the nf_tables netlink socket (edge-fw needs CAP_NET_ADMIN)")]
    OpenSocket(#[source] io::Error),
    /// The batch could not be sent.
    #[error("cannot send the nf_tables batch ({bytes} bytes)")]
    SendBatch {
        /// Batch size.
        bytes: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Sending a request or reading the kernel's answers failed.
    #[error("cannot talk to nf_tables ({what})")]
    Io {
        /// The request.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("nf_tables refused {what}: {}{}", io::Error::from_raw_os_error(*.errno), .reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Refused {
        /// The request.
        what: String,
        /// The errno.
        errno: i32,
        /// The kernel's extended-ack text.
        reason: Option<String>,
    },
}

/// One message the kernel rejected, mapped back to where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Sequence number of the message.
    pub seq: u32,
    /// errno returned by the kernel.
    pub errno: i32,
    /// What the message was (`rule in/ssh#0 edge.toml:207 in chain input`).
    pub what: String,
    /// The kernel's extended-ack text, if any.
    pub reason: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let err = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {err}", self.what)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// What a sent batch did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Operations sent.
    pub messages: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// Rejected messages, mapped back to their operation; empty means accepted.
    pub rejections: Vec<Rejection>,
}

/// What a dump saw besides its objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DumpInfo {
    /// The generation (low 16 bits) of the first reply, if any.
    pub res_id: Option<u16>,
    /// A reply was filled in another generation than the first, or the kernel flagged
    /// the dump as interrupted (`NLM_F_DUMP_INTR`): the ruleset changed meanwhile.
    pub changed: bool,
}

/// Size of the receive buffer (the kernel fills dump datagrams up to 32 KiB).
const RECV_BUF: usize = 256 * 1024;

/// A netfilter netlink socket configured like nft's: extended acks, capped acks. It may be
/// shared between threads: each request holds it until its last answer is read.
#[derive(Debug)]
pub struct Socket {
    sock: Mutex<NlSocket>,
    portid: u32,
    seq: AtomicU32,
}

impl Socket {
    /// Opens `NETLINK_NETFILTER` with `NETLINK_EXT_ACK` and `NETLINK_CAP_ACK` on, bound to
    /// a port of its own (the port the notifications of its commits carry).
    pub fn open() -> Result<Self, NetlinkError> {
        let mut sock = NlSocket::new(NETLINK_NETFILTER).map_err(NetlinkError::OpenSocket)?;
        let addr = sock.bind_auto().map_err(NetlinkError::OpenSocket)?;
        sock.set_ext_ack(true).map_err(NetlinkError::OpenSocket)?;
        sock.set_cap_ack(true).map_err(NetlinkError::OpenSocket)?;
        Ok(Self {
            sock: Mutex::new(sock),
            portid: addr.port_number(),
            seq: AtomicU32::new(std::process::id().rotate_left(16)),
        })
    }

    /// The netlink port of this socket.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    fn next_seqs(&self, n: u32) -> u32 {
        self.seq.fetch_add(n.saturating_add(2), Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NlSocket> {
        self.sock.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn send_all(sock: &NlSocket, buf: &[u8], what: &'static str) -> Result<(), NetlinkError> {
    let kernel = SocketAddr::new(0, 0);
    sock.send_to(buf, &kernel, 0)
        .map(|_| ())
        .map_err(|source| NetlinkError::Io { what, source })
}

fn recv<'b>(sock: &NlSocket, buf: &'b mut Vec<u8>, flags: i32) -> io::Result<&'b [u8]> {
    buf.clear();
    let n = sock.recv(buf, flags | libc::MSG_TRUNC)?;
    if n > buf.len() {
        return Err(io::Error::other(format!(
            "a netlink datagram of {n} bytes did not fit the {} byte buffer",
            buf.capacity()
        )));
    }
    Ok(&buf[..n])
}

impl Socket {
    /// Sends `tx` as one batch (without its END message when `dry_run`), then reads every
    /// answer the kernel queued while processing it.
    pub fn send(&self, tx: &Transaction, dry_run: bool) -> Result<Outcome, NetlinkError> {
        let batch = self.encode(tx);
        self.send_batch(tx, &batch, dry_run)
    }

    /// Encodes `tx` with sequence numbers of this socket (for [`Socket::send_batch`]: a
    /// dry run and the commit can send the same encoding).
    pub fn encode(&self, tx: &Transaction) -> Batch {
        tx.encode(self.next_seqs(tx.ops.len() as u32))
    }

    /// Sends an encoded transaction (without its END message when `dry_run`), then reads
    /// every answer the kernel queued while processing it.
    pub fn send_batch(
        &self,
        tx: &Transaction,
        batch: &Batch,
        dry_run: bool,
    ) -> Result<Outcome, NetlinkError> {
        let bytes = if dry_run {
            &batch.bytes[..batch.end_at]
        } else {
            &batch.bytes[..]
        };
        // As nft's mnl_batch_talk: the whole batch must fit the send buffer, and the answers
        // (only errors: no per-message ack) the receive buffer.
        let fail = |source: nix::Error| NetlinkError::SendBatch {
            bytes: bytes.len(),
            source: io::Error::from(source),
        };
        let snd = bytes.len().saturating_add(1 << 16).min(i32::MAX as usize);
        let rcv = (tx.ops.len() * 256).clamp(1 << 20, 64 << 20);
        let sock = self.lock();
        setsockopt(&sock.as_fd(), sockopt::SndBufForce, &snd).map_err(fail)?;
        setsockopt(&sock.as_fd(), sockopt::RcvBufForce, &rcv).map_err(fail)?;
        sock.send_to(bytes, &SocketAddr::new(0, 0), 0)
            .map_err(|source| NetlinkError::SendBatch {
                bytes: bytes.len(),
                source,
            })?;
        // nfnetlink processes the batch inside the send: every answer is queued by now.
        let mut rejections = Vec::new();
        let mut buf = Vec::with_capacity(RECV_BUF);
        loop {
            let d = match recv(&sock, &mut buf, libc::MSG_DONTWAIT) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(source) => {
                    return Err(NetlinkError::Io {
                        what: "reading the kernel's acknowledgements",
                        source,
                    });
                }
            };
            for m in codec::messages(d) {
                if let Some((errno, seq, reason)) = codec::error(&m)
                    && errno != 0
                {
                    let what = batch
                        .op_of(seq)
                        .and_then(|i| tx.ops.get(i))
                        .map(|op| op.describe())
                        .unwrap_or_else(|| format!("batch control message (seq {seq})"));
                    rejections.push(Rejection {
                        seq,
                        errno,
                        what,
                        reason,
                    });
                }
            }
        }
        Ok(Outcome {
            messages: tx.ops.len(),
            bytes: bytes.len(),
            rejections,
        })
    }

    /// Dumps every object of kind `msg` (`NFT_MSG_GET*`) of `family`, filtered by `attrs`
    /// (a table, a set), calling `f` with each reply. `Ok(None)` when the kernel answers
    /// ENOENT (the table or set does not exist).
    pub fn dump(
        &self,
        msg: i32,
        family: u8,
        attrs: &Attrs,
        mut f: impl FnMut(&Msg<'_>),
    ) -> Result<Option<DumpInfo>, NetlinkError> {
        let seq = self.next_seqs(1);
        let mut req = Vec::new();
        codec::put_message(
            &mut req,
            uapi::msg_type(msg),
            (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            seq,
            family,
            0,
            attrs.bytes(),
        );
        let sock = self.lock();
        send_all(&sock, &req, "a dump request")?;
        let mut info = DumpInfo::default();
        let mut buf = Vec::with_capacity(RECV_BUF);
        loop {
            let d = recv(&sock, &mut buf, 0).map_err(|source| NetlinkError::Io {
                what: "reading a dump",
                source,
            })?;
            for m in codec::messages(d) {
                if m.seq != seq {
                    continue;
                }
                if m.ty == libc::NLMSG_DONE as u16 {
                    return Ok(Some(info));
                }
                if let Some((errno, _, reason)) = codec::error(&m) {
                    if errno == libc::ENOENT {
                        return Ok(None);
                    }
                    if errno != 0 {
                        return Err(NetlinkError::Refused {
                            what: format!("a dump (NFT_MSG {msg})"),
                            errno,
                            reason,
                        });
                    }
                    continue;
                }
                if m.flags & uapi::NLM_F_DUMP_INTR != 0 {
                    info.changed = true;
                }
                match info.res_id {
                    None => info.res_id = Some(m.res_id()),
                    Some(r) if r != m.res_id() => info.changed = true,
                    Some(_) => {}
                }
                f(&m);
            }
        }
    }

    /// The current ruleset generation (`NFT_MSG_GETGEN`).
    pub fn generation(&self) -> Result<u32, NetlinkError> {
        let seq = self.next_seqs(1);
        let mut req = Vec::new();
        codec::put_message(
            &mut req,
            uapi::msg_type(libc::NFT_MSG_GETGEN),
            libc::NLM_F_REQUEST as u16,
            seq,
            uapi::NFPROTO_UNSPEC,
            0,
            &[],
        );
        let sock = self.lock();
        send_all(&sock, &req, "a generation request")?;
        let mut buf = Vec::with_capacity(RECV_BUF);
        loop {
            let d = recv(&sock, &mut buf, 0).map_err(|source| NetlinkError::Io {
                what: "reading the generation",
                source,
            })?;
            for m in codec::messages(d) {
                if m.seq != seq {
                    continue;
                }
                if let Some((errno, _, reason)) = codec::error(&m)
                    && errno != 0
                {
                    return Err(NetlinkError::Refused {
                        what: "the generation request".to_owned(),
                        errno,
                        reason,
                    });
                }
                if m.nft() == Some(libc::NFT_MSG_NEWGEN as u16) {
                    return Ok(codec::gen_of(&m).id);
                }
            }
        }
    }
}

/// Opens a netlink socket joined to `NFNLGRP_NFTABLES`: every nf_tables transaction in this
/// network namespace arrives on it as notifications (see [`crate::events`]).
///
/// Equivalent to what `nft monitor` listens to.
pub fn subscribe() -> io::Result<NlSocket> {
    let mut sock = NlSocket::new(NETLINK_NETFILTER)?;
    sock.bind(&SocketAddr::new(0, 1 << (uapi::NFNLGRP_NFTABLES - 1)))?;
    Ok(sock)
}

/// Receives one datagram of notifications into `buf` (blocking).
pub fn recv_events<'b>(sock: &NlSocket, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
    buf.clear();
    let n = sock.recv(buf, 0)?;
    Ok(&buf[..n.min(buf.len())])
}
