//! Pure: counters the engine keeps (per peer and per device) and their snapshot types.
//! Only atomics live here; the I/O shell exports them as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

pub use edge_metrics::wg::PeerCounts;

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DropReason {
    /// A TUN packet whose destination no peer's allowed IPs cover.
    NoRoute,
    /// The peer has no endpoint to send to.
    NoEndpoint,
    /// A data packet for a session index no peer owns.
    UnknownIndex,
    /// A handshake initiation from a key no peer has.
    UnknownPeer,
    /// Decryption, replay check or handshake validation failed.
    Decrypt,
    /// The inner source address is not in the sending peer's allowed IPs.
    SourceNotAllowed,
    /// A handshake message's mac1 was wrong.
    InvalidMac,
    /// A handshake message dropped because we are under load.
    UnderLoad,
    /// A malformed datagram or TUN packet.
    Malformed,
    /// Writing to the TUN device failed.
    TunWrite,
    /// Sending on the UDP socket failed.
    UdpSend,
    /// A TUN packet while this host is the BACKUP (or FAULT) of a pair: only the master
    /// sends to peers.
    Standby,
}

impl DropReason {
    /// Every reason, in a stable order.
    pub const ALL: [DropReason; 12] = [
        DropReason::NoRoute,
        DropReason::NoEndpoint,
        DropReason::UnknownIndex,
        DropReason::UnknownPeer,
        DropReason::Decrypt,
        DropReason::SourceNotAllowed,
        DropReason::InvalidMac,
        DropReason::UnderLoad,
        DropReason::Malformed,
        DropReason::TunWrite,
        DropReason::UdpSend,
        DropReason::Standby,
    ];

    /// The label value used in metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoRoute => "no_route",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::Decrypt => "decrypt",
            DropReason::SourceNotAllowed => "source_not_allowed",
            DropReason::InvalidMac => "invalid_mac",
            DropReason::UnderLoad => "under_load",
            DropReason::Malformed => "malformed",
            DropReason::TunWrite => "tun_write",
            DropReason::UdpSend => "udp_send",
            DropReason::Standby => "standby",
        }
    }
}

/// Device-wide counters.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Cookie replies sent because we were under load.
    pub cookie_replies: AtomicU64,
}

impl DeviceCounters {
    /// Counts one dropped packet.
    pub fn drop(&self, r: DropReason) {
        self.drops[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Current drop count for a reason.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r as usize].load(Ordering::Relaxed)
    }
}

/// Per-peer counters.
#[derive(Debug, Default)]
pub struct PeerCounters {
    /// Plaintext bytes received from the peer.
    pub rx_bytes: AtomicU64,
    /// Plaintext bytes sent to the peer.
    pub tx_bytes: AtomicU64,
    /// Handshake initiations sent.
    pub handshake_attempts: AtomicU64,
    /// Handshakes that failed (invalid messages, or attempts given up).
    pub handshake_failures: AtomicU64,
    /// Times the endpoint moved because of an authenticated packet from elsewhere.
    pub endpoint_changes: AtomicU64,
    /// Last handshake, Unix time in milliseconds (0 = never).
    pub last_handshake_ms: AtomicU64,
}

impl PeerCounters {
    /// A copy of the counters as they are now.
    pub fn snapshot(&self) -> PeerCounts {
        PeerCounts {
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            handshake_attempts: self.handshake_attempts.load(Ordering::Relaxed),
            handshake_failures: self.handshake_failures.load(Ordering::Relaxed),
            endpoint_changes: self.endpoint_changes.load(Ordering::Relaxed),
            last_handshake_seconds: self.last_handshake_ms.load(Ordering::Relaxed) / 1000,
        }
    }
}

/// A point-in-time copy of one peer's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetrics {
    /// Peer public key, base64.
    pub public_key: String,
    /// Optional configured name.
    pub name: Option<String>,
    /// The counters, as the metrics export them.
    pub counts: PeerCounts,
}

/// A point-in-time copy of every counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Per-peer counters.
    pub peers: Vec<PeerMetrics>,
    /// Cookie replies sent.
    pub cookie_replies: u64,
    /// Drops by reason label.
    pub drops: Vec<(String, u64)>,
}
