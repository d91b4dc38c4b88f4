//! I/O: the UDP sockets on the listen port (IPv4 and IPv6), with 7 MiB buffers
//! (`SO_*BUFFORCE`), `recvmmsg` + UDP GRO on receive and `sendmmsg` + UDP GSO
//! (`UDP_SEGMENT`) on send, both probed at runtime.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

// Kernel ABI values (linux/udp.h, asm-generic/socket.h) that libc does not export. tun.rs
// declares the TUN ones the same way: alike in shape only, different constants.
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;
const SO_MARK: libc::c_int = 36;
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
/// Socket buffer size, as wireguard-go uses.
pub const SOCKET_BUFFER: libc::c_int = 7 << 20;
/// Most segments one GSO send may carry (kernel `UDP_MAX_SEGMENTS`).
pub const MAX_GSO_SEGMENTS: usize = 64;
/// Largest UDP payload one GSO send may carry.
pub const MAX_GSO_BYTES: usize = 65000;

/// Errors of socket setup.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// `socket()` failed.
    #[error("failed to create {family} udp socket")]
    CreateSocket {
        /// "ipv4" or "ipv6".
        family: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `bind()` failed.
    #[error("failed to bind udp port {port} ({family})")]
    Bind {
        /// "ipv4" or "ipv6".
        family: &'static str,
        /// The port.
        port: u16,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `setsockopt(SO_MARK)` failed.
    #[error("failed to set fwmark {mark:#x} on the udp sockets")]
    SetFwmark {
        /// The mark.
        mark: u32,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// One bound UDP socket with its offload capabilities.
#[derive(Debug)]
pub struct UdpSocket {
    fd: OwnedFd,
    v6: bool,
    gso: AtomicBool,
    gro: bool,
}

fn setsockopt_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn sockaddr_from(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // The two arms are alike in shape only: `sockaddr_in` and `sockaddr_in6` are distinct
    // kernel structs with their own field names (and the IPv6 one has two more fields).
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = 0;
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn sockaddr_to(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            // v4-mapped sources show as plain IPv4 so endpoints compare equal
            if let Some(v4) = ip.to_ipv4_mapped() {
                return Some(SocketAddr::V4(SocketAddrV4::new(
                    v4,
                    u16::from_be(sin6.sin6_port),
                )));
            }
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                0,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

impl UdpSocket {
    /// Creates and binds a socket on `port` (0 = any) for one family, with large buffers,
    /// a receive timeout (so threads can notice shutdown) and GRO/GSO where available.
    pub fn bind(v6: bool, port: u16, fwmark: u32) -> Result<UdpSocket, UdpError> {
        let any = if v6 {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        Self::bind_on(any, port, fwmark)
    }

    /// Like [`UdpSocket::bind`], on address `ip`. A specific address is bound with
    /// `IP_FREEBIND`: it need not be on the host yet (a virtual address keepalived adds to
    /// the master only), and everything sent leaves from it.
    pub fn bind_on(ip: IpAddr, port: u16, fwmark: u32) -> Result<UdpSocket, UdpError> {
        let v6 = ip.is_ipv6();
        let family: &'static str = if v6 { "ipv6" } else { "ipv4" };
        let af = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain socket(2) call.
        let raw = unsafe { libc::socket(af, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(UdpError::CreateSocket {
                family,
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: raw is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if v6 {
            let _ = setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1);
        }
        // Big buffers: FORCE needs CAP_NET_ADMIN; fall back to the capped variant.
        if setsockopt_int(raw, libc::SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER);
        }
        if setsockopt_int(raw, libc::SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER);
        }
        if fwmark != 0 {
            setsockopt_int(raw, libc::SOL_SOCKET, SO_MARK, fwmark as libc::c_int).map_err(
                |source| UdpError::SetFwmark {
                    mark: fwmark,
                    source,
                },
            )?;
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 250_000,
        };
        // SAFETY: passes a pointer to a live timeval and its size.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        if !ip.is_unspecified() {
            let (level, opt) = if v6 {
                (libc::IPPROTO_IPV6, libc::IPV6_FREEBIND)
            } else {
                (libc::IPPROTO_IP, libc::IP_FREEBIND)
            };
            setsockopt_int(raw, level, opt, 1).map_err(|source| UdpError::Bind {
                family,
                port,
                source,
            })?;
        }
        let addr = match ip {
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, port, 0, 0)),
            IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, port)),
        };
        // SAFETY: zeroed sockaddr_storage is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let len = sockaddr_from(&addr, &mut ss);
        // SAFETY: ss holds a valid sockaddr of length len.
        let rc = unsafe { libc::bind(raw, (&ss as *const libc::sockaddr_storage).cast(), len) };
        if rc < 0 {
            return Err(UdpError::Bind {
                family,
                port,
                source: io::Error::last_os_error(),
            });
        }
        let gro = setsockopt_int(raw, SOL_UDP, UDP_GRO, 1).is_ok();
        // Probe GSO support the way wireguard-go does: getsockopt(UDP_SEGMENT) works.
        let mut v: libc::c_int = 0;
        let mut l = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and l are live and sized for the option.
        let gso = unsafe {
            libc::getsockopt(
                raw,
                SOL_UDP,
                UDP_SEGMENT,
                (&mut v as *mut libc::c_int).cast(),
                &mut l,
            )
        } == 0;
        Ok(UdpSocket {
            fd,
            v6,
            gso: AtomicBool::new(gso && std::env::var_os("EDGE_WG_NO_GSO").is_none()),
            gro: gro && std::env::var_os("EDGE_WG_NO_GRO").is_none(),
        })
    }

    /// The locally bound port.
    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: zeroed sockaddr_storage is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: ss/len describe a live buffer large enough for any sockaddr.
        let rc = unsafe {
            libc::getsockname(
                self.fd.as_raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sockaddr_to(&ss).map(|a| a.port()).unwrap_or(0))
    }

    /// True for the IPv6 socket.
    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// True when UDP GSO is in use for sends.
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// True when UDP GRO is on for receives.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Sets (or clears with 0) the fwmark on this socket.
    pub fn set_fwmark(&self, mark: u32) -> Result<(), UdpError> {
        setsockopt_int(
            self.fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MARK,
            mark as libc::c_int,
        )
        .map_err(|source| UdpError::SetFwmark { mark, source })
    }

    /// Sends one datagram.
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_storage is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let len = sockaddr_from(&dst, &mut ss);
        // SAFETY: buf and ss are live for the call.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&ss as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Receives a batch into `rb`; returns how many messages arrived (0 on timeout).
    pub fn recv_batch(&self, rb: &mut RecvBatch) -> io::Result<usize> {
        let n = rb.slots;
        for i in 0..n {
            rb.iovs[i] = libc::iovec {
                iov_base: rb.bufs[i * rb.buf_size..].as_mut_ptr().cast(),
                iov_len: rb.buf_size,
            };
            let h = &mut rb.hdrs[i].msg_hdr;
            h.msg_name = (&mut rb.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut rb.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = rb.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_controllen = rb.cmsgs[i].0.len();
            h.msg_flags = 0;
            rb.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by rb for the whole call.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                rb.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = rc as usize;
        for i in 0..got {
            rb.lens[i] = rb.hdrs[i].msg_len as usize;
            rb.srcs[i] = sockaddr_to(&rb.names[i]);
            rb.segs[i] = 0;
            let h = &rb.hdrs[i].msg_hdr;
            // SAFETY: walks the control buffer the kernel filled, within msg_controllen.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == SOL_UDP && (*c).cmsg_type == UDP_GRO {
                        let mut v: libc::c_int = 0;
                        std::ptr::copy_nonoverlapping(
                            libc::CMSG_DATA(c),
                            (&mut v as *mut libc::c_int).cast::<u8>(),
                            size_of::<libc::c_int>(),
                        );
                        rb.segs[i] = v.max(0) as usize;
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
        }
        Ok(got)
    }

    /// Sends every message of `tb`; GSO runs go out as one `UDP_SEGMENT` send each.
    /// On `EIO` (no checksum offload on the egress device) GSO is turned off and the
    /// remaining messages are sent segment by segment.
    pub fn send_batch(&self, tb: &mut SendBatch) -> io::Result<()> {
        let mut start = 0;
        while start < tb.msgs.len() {
            let gso = self.gso();
            let end = tb.msgs.len().min(start + SendBatch::MAX_MSGS);
            let mut count = 0;
            for (j, m) in tb.msgs[start..end].iter().enumerate() {
                if !gso && m.segs > 1 {
                    break;
                }
                tb.iovs[j] = libc::iovec {
                    iov_base: tb.buf[m.off..].as_mut_ptr().cast(),
                    iov_len: m.len,
                };
                let namelen = sockaddr_from(&m.dst, &mut tb.names[j]);
                let h = &mut tb.hdrs[j].msg_hdr;
                h.msg_name = (&mut tb.names[j] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = namelen;
                h.msg_iov = &mut tb.iovs[j];
                h.msg_iovlen = 1;
                h.msg_flags = 0;
                if m.segs > 1 {
                    let cm = &mut tb.cmsgs[j].0;
                    h.msg_control = cm.as_mut_ptr().cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    h.msg_controllen =
                        unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
                    // SAFETY: the control buffer is 64 bytes, larger than CMSG_SPACE(2).
                    unsafe {
                        let c = libc::CMSG_FIRSTHDR(h);
                        (*c).cmsg_level = SOL_UDP;
                        (*c).cmsg_type = UDP_SEGMENT;
                        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                        std::ptr::copy_nonoverlapping(
                            (&m.seg_size as *const u16).cast::<u8>(),
                            libc::CMSG_DATA(c),
                            size_of::<u16>(),
                        );
                    }
                } else {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
                count += 1;
            }
            if count == 0 {
                // GSO is off: send this run's segments one by one.
                let m = tb.msgs[start];
                let mut off = m.off;
                let stop = m.off + m.len;
                while off < stop {
                    let l = usize::from(m.seg_size).min(stop - off);
                    let _ = self.send_to(&tb.buf[off..off + l], m.dst);
                    off += l;
                }
                start += 1;
                continue;
            }
            // SAFETY: every header points at live buffers owned by tb for the whole call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    tb.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EIO) if gso => {
                        self.gso.store(false, Ordering::Relaxed);
                        continue;
                    }
                    // Unreachable peers, full buffers etc.: drop this message, go on.
                    _ => {
                        start += 1;
                        if start >= tb.msgs.len() {
                            tb.clear();
                            return Err(e);
                        }
                        continue;
                    }
                }
            }
            start += (rc as usize).max(1);
        }
        tb.clear();
        Ok(())
    }
}

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

/// Preallocated buffers for one `recvmmsg` call.
pub struct RecvBatch {
    slots: usize,
    buf_size: usize,
    bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    lens: Vec<usize>,
    srcs: Vec<Option<SocketAddr>>,
    segs: Vec<usize>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecvBatch({} x {})", self.slots, self.buf_size)
    }
}

// SAFETY: the raw pointers inside are only scratch space rebuilt before every call.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Allocates `slots` receive buffers of `buf_size` bytes (64 KiB with GRO).
    pub fn new(slots: usize, buf_size: usize) -> RecvBatch {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let (iov, hdr, name) = unsafe {
            (
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        RecvBatch {
            slots,
            buf_size,
            bufs: vec![0; slots * buf_size],
            iovs: vec![iov; slots],
            hdrs: vec![hdr; slots],
            names: vec![name; slots],
            cmsgs: vec![CmsgBuf([0; 64]); slots],
            lens: vec![0; slots],
            srcs: vec![None; slots],
            segs: vec![0; slots],
        }
    }

    /// Message `i` of the last receive: (bytes, source, GRO segment size or 0).
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>, usize) {
        let off = i * self.buf_size;
        (
            &self.bufs[off..off + self.lens[i]],
            self.srcs[i],
            self.segs[i],
        )
    }
}

/// One outgoing message of a [`SendBatch`]: a datagram, or a GSO run of equal-size
/// datagrams (the last may be shorter) to one destination.
#[derive(Debug, Clone, Copy)]
pub struct OutMsg {
    off: usize,
    len: usize,
    seg_size: u16,
    segs: usize,
    dst: SocketAddr,
    closed: bool,
}

/// Encrypted datagrams gathered for one `sendmmsg`, with GSO runs merged as they are added.
pub struct SendBatch {
    buf: Vec<u8>,
    used: usize,
    msgs: Vec<OutMsg>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    names: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<CmsgBuf>,
    gso: bool,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SendBatch({} msgs, {} bytes)",
            self.msgs.len(),
            self.used
        )
    }
}

// SAFETY: the raw pointers inside are only scratch space rebuilt before every call.
unsafe impl Send for SendBatch {}

impl SendBatch {
    const MAX_MSGS: usize = 64;

    /// Allocates a batch of `bytes` capacity.
    pub fn new(bytes: usize) -> SendBatch {
        // SAFETY: all-zero is a valid value for these plain C structs.
        let (iov, hdr, name) = unsafe {
            (
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
                zeroed::<libc::sockaddr_storage>(),
            )
        };
        SendBatch {
            buf: vec![0; bytes],
            used: 0,
            msgs: Vec::with_capacity(Self::MAX_MSGS * 4),
            iovs: vec![iov; Self::MAX_MSGS],
            hdrs: vec![hdr; Self::MAX_MSGS],
            names: vec![name; Self::MAX_MSGS],
            cmsgs: vec![CmsgBuf([0; 64]); Self::MAX_MSGS],
            gso: true,
        }
    }

    /// Allows or forbids merging into GSO runs (follow the socket's capability).
    pub fn set_gso(&mut self, on: bool) {
        self.gso = on;
    }

    /// Free space in bytes.
    pub fn room(&self) -> usize {
        self.buf.len() - self.used
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// The writable tail of the buffer, where the next datagram is encrypted.
    pub fn tail(&mut self) -> &mut [u8] {
        &mut self.buf[self.used..]
    }

    /// Commits `len` bytes just written at the tail as a datagram to `dst`.
    pub fn commit(&mut self, len: usize, dst: SocketAddr) {
        let off = self.used;
        self.used += len;
        if self.gso
            && let Some(last) = self.msgs.last_mut()
            && !last.closed
            && last.dst == dst
            && usize::from(last.seg_size) >= len
            && last.segs < MAX_GSO_SEGMENTS
            && last.len + len <= MAX_GSO_BYTES
            && last.off + last.len == off
        {
            last.len += len;
            last.segs += 1;
            // a shorter datagram must be the last of its run
            last.closed = len < usize::from(last.seg_size);
            return;
        }
        self.msgs.push(OutMsg {
            off,
            len,
            seg_size: len.min(u16::MAX as usize) as u16,
            segs: 1,
            dst,
            closed: false,
        });
    }

    /// Drops everything queued.
    pub fn discard(&mut self) {
        self.clear();
    }

    /// Number of queued messages (GSO runs count once).
    pub fn messages(&self) -> usize {
        self.msgs.len()
    }

    fn clear(&mut self) {
        self.msgs.clear();
        self.used = 0;
    }
}
