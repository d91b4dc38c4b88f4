//! I/O: the TUN device: multi-queue, `IFF_VNET_HDR` with TCP segmentation offload
//! enabled (`TUNSETOFFLOAD`), so the kernel hands us 64 KiB TCP super-packets and
//! accepts coalesced ones back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// What to do when `/dev/net/tun` cannot be opened.
fn open_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            " (the unit runs edge-wg as an unprivileged dynamic user: the device must be mode 0666, as udev makes it; check `ls -l /dev/net/tun`)"
        }
        io::ErrorKind::NotFound => {
            " (no TUN device: `modprobe tun`, or in a container bind /dev/net/tun)"
        }
        _ => "",
    }
}

/// Errors of TUN setup.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// Opening `/dev/net/tun` failed.
    #[error("failed to open /dev/net/tun{}", open_hint(.0))]
    OpenDevice(#[source] io::Error),
    /// The interface name does not fit `IFNAMSIZ`.
    #[error("interface name {name:?} is empty or longer than 15 bytes")]
    InterfaceName {
        /// The rejected name.
        name: String,
    },
    /// `TUNSETIFF` failed.
    #[error("failed to attach queue of tun {name}")]
    AttachQueue {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `TUNSETOFFLOAD` failed.
    #[error("failed to enable offloads on tun {name}")]
    SetOffload {
        /// Interface name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

// Kernel ABI values (linux/if_tun.h) that libc does not export. udp.rs declares the UDP
// ones the same way: alike in shape only, different constants; nothing to share.
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One queue of a multi-queue TUN device; every read and write carries a virtio-net header.
#[derive(Debug)]
pub struct TunQueue {
    file: File,
}

/// Opens `queues` queues of the TUN device `name` (created if missing, reused if it
/// already exists and we own it), with TCP offloads on.
pub fn open(name: &str, queues: usize) -> Result<Vec<TunQueue>, TunError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(TunError::InterfaceName {
            name: name.to_string(),
        });
    }
    let mut out = Vec::with_capacity(queues);
    for _ in 0..queues.max(1) {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(TunError::OpenDevice)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which IfReq mirrors (16-byte
        // name, short flags, padded to the union size); the fd is a valid open tun fd.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) };
        if rc < 0 {
            return Err(TunError::AttachQueue {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes an unsigned int by value; the fd is valid.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, offloads) };
        if rc < 0 {
            return Err(TunError::SetOffload {
                name: name.to_string(),
                source: io::Error::last_os_error(),
            });
        }
        out.push(TunQueue { file });
    }
    Ok(out)
}

impl TunQueue {
    /// Reads one packet (virtio-net header first); `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes; the fd is open.
            let n =
                unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Writes one packet (virtio-net header first).
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for reads of buf.len() bytes; the fd is open.
            let n = unsafe { libc::write(self.file.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits up to `timeout_ms` for the queue to become readable.
    pub fn poll_readable(&self, timeout_ms: i32) -> bool {
        let mut p = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        rc > 0
    }
}
