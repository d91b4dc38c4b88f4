//! Pure: TUN offload math. Splitting the TCP super-packets that the kernel hands a TUN
//! with `IFF_VNET_HDR` + TSO into wire-sized segments (GSO), and coalescing received TCP
//! segments of one flow back into a super-packet for a single TUN write (GRO).
//!
//! The approach follows wireguard-go's `tun/offload_linux.go` (read, not copied): the
//! virtio-net header in front of every TUN packet carries the segment size, and
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM` marks a partial checksum the other side completes.

/// Size of `struct virtio_net_hdr` (without the mergeable-buffer count).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at csum_start+csum_offset is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit.
pub const GSO_ECN: u8 = 0x80;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;
const PROTO_TCP: u8 = 6;

/// Errors of the offload math (malformed super-packets are dropped and counted).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OffloadError {
    /// The virtio-net header is shorter than 10 bytes.
    #[error("virtio-net header is truncated")]
    ParseVnetHeader,
    /// The GSO type is one we did not enable.
    #[error("unsupported gso type {0}")]
    UnsupportedGso(u8),
    /// The packet's IP/TCP headers are not what its GSO type claims.
    #[error("super-packet headers are malformed")]
    ParseHeaders,
    /// The scratch buffer cannot hold a segment.
    #[error("segment does not fit the scratch buffer")]
    ScratchTooSmall,
}

/// `struct virtio_net_hdr`, native endian as the TUN driver uses it on this host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `VIRTIO_NET_HDR_F_*`.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`.
    pub gso_type: u8,
    /// Length of the headers (IP + TCP) in front of the payload.
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Offset of the checksum field from csum_start.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the first 10 bytes.
    pub fn decode(b: &[u8]) -> Result<VnetHdr, OffloadError> {
        if b.len() < VNET_HDR_LEN {
            return Err(OffloadError::ParseVnetHeader);
        }
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// Encodes into the first 10 bytes of `b` (which must be at least that long).
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
    }
}

/// Adds `data` to a ones'-complement running sum (big-endian 16-bit words).
pub fn csum_add(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += w >> 32;
        sum += w & 0xffff_ffff;
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        sum += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        sum += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(b) = rest.first() {
        sum += u64::from(*b) << 8;
    }
    sum
}

/// Folds a running sum to 16 bits (not inverted).
pub fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Sum of the TCP/UDP pseudo-header for the given addresses, protocol and L4 length.
pub fn pseudo_header_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    let mut s = csum_add(0, src);
    s = csum_add(s, dst);
    s + u64::from(proto) + len as u64
}

/// Where the IP and TCP headers of a TCP packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpLayout {
    v6: bool,
    ip_hlen: usize,
    tcp_hlen: usize,
}

impl TcpLayout {
    fn hdr(&self) -> usize {
        self.ip_hlen + self.tcp_hlen
    }
    fn addrs<'a>(&self, p: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        if self.v6 {
            (&p[8..24], &p[24..40])
        } else {
            (&p[12..16], &p[16..20])
        }
    }
}

fn tcp_layout(p: &[u8]) -> Option<TcpLayout> {
    let ver = p.first()? >> 4;
    let (v6, ip_hlen) = match ver {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if ihl < 20 || p.len() < ihl || p[9] != PROTO_TCP {
                return None;
            }
            // Fragments are never coalesced or split.
            if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
                return None;
            }
            (false, ihl)
        }
        6 => {
            if p.len() < 40 || p[6] != PROTO_TCP {
                return None;
            }
            (true, 40)
        }
        _ => return None,
    };
    if p.len() < ip_hlen + 20 {
        return None;
    }
    let tcp_hlen = usize::from(p[ip_hlen + 12] >> 4) * 4;
    if tcp_hlen < 20 || p.len() < ip_hlen + tcp_hlen {
        return None;
    }
    Some(TcpLayout {
        v6,
        ip_hlen,
        tcp_hlen,
    })
}

fn ipv4_header_checksum(h: &mut [u8]) {
    h[10] = 0;
    h[11] = 0;
    let c = !csum_fold(csum_add(0, h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Completes a partial checksum (`F_NEEDS_CSUM`) in place.
pub fn complete_checksum(pkt: &mut [u8], csum_start: usize, csum_offset: usize) -> bool {
    let at = csum_start + csum_offset;
    if at + 2 > pkt.len() || csum_start > pkt.len() {
        return false;
    }
    // The field already holds the folded pseudo-header sum; summing over it completes it.
    let c = !csum_fold(csum_add(0, &pkt[csum_start..]));
    pkt[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Turns one packet read from the TUN (after its virtio-net header) into wire-ready IP
/// packets, calling `emit` for each: GSO super-packets are split into `gso_size` segments
/// with fixed-up IP/TCP headers and full checksums; partial checksums are completed.
pub fn gso_split(
    pkt: &[u8],
    h: &VnetHdr,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let gso = h.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        if h.flags & F_NEEDS_CSUM == 0 {
            emit(pkt);
            return Ok(1);
        }
        let out = scratch
            .get_mut(..pkt.len())
            .ok_or(OffloadError::ScratchTooSmall)?;
        out.copy_from_slice(pkt);
        if !complete_checksum(out, h.csum_start.into(), h.csum_offset.into()) {
            return Err(OffloadError::ParseHeaders);
        }
        emit(out);
        return Ok(1);
    }
    if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
        return Err(OffloadError::UnsupportedGso(h.gso_type));
    }
    let l = tcp_layout(pkt).ok_or(OffloadError::ParseHeaders)?;
    if l.v6 != (gso == GSO_TCPV6) || h.gso_size == 0 {
        return Err(OffloadError::ParseHeaders);
    }
    let hdr = l.hdr();
    let mss = usize::from(h.gso_size);
    let payload = &pkt[hdr..];
    if scratch.len() < hdr + mss.min(payload.len()) {
        return Err(OffloadError::ScratchTooSmall);
    }
    let t = l.ip_hlen;
    let seq0 = u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]]);
    let flags0 = pkt[t + 13];
    let id0 = u16::from_be_bytes([pkt[4], pkt[5]]);
    let n = payload.len().div_ceil(mss).max(1);
    for i in 0..n {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let seg_len = hdr + chunk.len();
        let s = &mut scratch[..seg_len];
        s[..hdr].copy_from_slice(&pkt[..hdr]);
        s[hdr..].copy_from_slice(chunk);
        if l.v6 {
            s[4..6].copy_from_slice(&((seg_len - 40) as u16).to_be_bytes());
        } else {
            s[2..4].copy_from_slice(&(seg_len as u16).to_be_bytes());
            s[4..6].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
            ipv4_header_checksum(&mut s[..l.ip_hlen]);
        }
        let seq = seq0.wrapping_add((i * mss) as u32);
        s[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        let mut f = flags0;
        if i + 1 < n {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        s[t + 13] = f;
        s[t + 16] = 0;
        s[t + 17] = 0;
        let (src, dst) = l.addrs(s);
        let ps = pseudo_header_sum(src, dst, PROTO_TCP, seg_len - t);
        let c = !csum_fold(csum_add(ps, &s[t..]));
        s[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        emit(s);
    }
    Ok(n)
}

/// A hash of an IP packet's addresses, protocol and ports (0 for anything else);
/// equal for every packet of one flow in one direction.
pub fn flow_hash(p: &[u8]) -> u64 {
    let (addrs, proto, l4) = match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => (&p[12..20], p[9], usize::from(p[0] & 0x0f) * 4),
        Some(6) if p.len() >= 40 => (&p[8..40], p[6], 40),
        _ => return 0,
    };
    let mut h = csum_add(u64::from(proto), addrs).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if (proto == PROTO_TCP || proto == 17) && p.len() >= l4 + 4 {
        let ports = u32::from_be_bytes([p[l4], p[l4 + 1], p[l4 + 2], p[l4 + 3]]);
        h ^= u64::from(ports).wrapping_mul(0xff51_afd7_ed55_8ccd);
    }
    h ^ (h >> 31)
}

/// One output packet being built by the [`Coalescer`].
#[derive(Debug, Clone, Copy, Default)]
struct Item {
    /// Bytes used in the slot, including the virtio-net header room.
    len: usize,
    /// TCP layout if this item may be extended.
    layout: Option<TcpLayout>,
    /// Payload bytes of the first segment (every segment but the last has this size).
    gso_size: usize,
    /// Number of segments.
    segs: usize,
    /// Sequence number the next segment must carry.
    next_seq: u32,
    /// No further segment may be appended (short or PSH segment seen).
    closed: bool,
    /// Every segment's checksums were verified here (so the kernel may skip them).
    verified: bool,
}

/// What [`Coalescer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended to a super-packet under construction.
    Coalesced,
    /// Stored as a new output packet.
    Stored,
    /// No room: flush, then push again.
    Full,
}

/// GRO for the TUN write path: collects decrypted IP packets into at most `slots`
/// output packets, each with room for a virtio-net header, merging consecutive
/// in-order TCP segments of a flow. Buffers are allocated once.
///
/// Every TCP segment is checked (IPv4 header checksum, TCP checksum) before it may start
/// or join a super-packet, as wireguard-go does: a merged packet goes to the kernel with a
/// partial checksum that the kernel trusts, so a corrupted segment inside it would never
/// be caught. A segment that fails the check is written alone, unmarked, and the kernel
/// drops it; packets nobody checked here (UDP, ICMP, bare ACKs) are left to the kernel too.
#[derive(Debug)]
pub struct Coalescer {
    slot_size: usize,
    mem: Vec<u8>,
    items: Vec<Item>,
    max_items: usize,
}

/// Largest IP packet a TUN write can carry.
pub const MAX_SUPER: usize = 65535;

impl Coalescer {
    /// Creates a coalescer with `slots` output buffers of 64 KiB.
    pub fn new(slots: usize) -> Coalescer {
        let slot_size = VNET_HDR_LEN + MAX_SUPER;
        Coalescer {
            slot_size,
            mem: vec![0; slot_size * slots],
            items: Vec::with_capacity(slots),
            max_items: slots,
        }
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Offers one decrypted IP packet.
    pub fn push(&mut self, pkt: &[u8]) -> Pushed {
        if pkt.len() > MAX_SUPER {
            return Pushed::Stored; // cannot happen for decrypted packets; drop silently
        }
        let layout = tcp_layout(pkt);
        if let Some(l) = layout {
            let t = l.ip_hlen;
            let flags = pkt[t + 13];
            let plen = pkt.len() - l.hdr();
            let seq = u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]]);
            if plen > 0 && (flags == TCP_ACK || flags == TCP_ACK | TCP_PSH) {
                if !checksums_valid(pkt, l) {
                    // Written alone and unmarked: the kernel verifies it and drops it. It
                    // stays the newest item of its flow, so nothing after it is merged
                    // into an item before it.
                    return self.store(pkt, Some(l), plen, seq, true, false);
                }
                // Only the newest item of this flow may be extended, so that a flow's
                // packets leave in the order they came.
                for idx in (0..self.items.len()).rev() {
                    let it = self.items[idx];
                    let Some(il) = it.layout else { continue };
                    let base = idx * self.slot_size + VNET_HDR_LEN;
                    let head = &self.mem[base..base + il.hdr()];
                    if !same_flow(head, il, pkt, l) {
                        continue;
                    }
                    if !it.closed
                        && it.verified
                        && seq == it.next_seq
                        && plen <= it.gso_size
                        && it.len + plen <= self.slot_size
                        && same_headers(head, il, pkt, l)
                    {
                        let at = idx * self.slot_size + it.len;
                        self.mem[at..at + plen].copy_from_slice(&pkt[l.hdr()..]);
                        let it = &mut self.items[idx];
                        it.len += plen;
                        it.segs += 1;
                        it.next_seq = seq.wrapping_add(plen as u32);
                        it.closed = plen < it.gso_size || flags & TCP_PSH != 0;
                        if flags & TCP_PSH != 0 {
                            // carry PSH to the super-packet
                            self.mem[base + t + 13] |= TCP_PSH;
                        }
                        return Pushed::Coalesced;
                    }
                    break;
                }
                return self.store(
                    pkt,
                    Some(l),
                    plen,
                    seq.wrapping_add(plen as u32),
                    flags & TCP_PSH != 0,
                    true,
                );
            }
        }
        self.store(pkt, None, 0, 0, true, false)
    }

    fn store(
        &mut self,
        pkt: &[u8],
        layout: Option<TcpLayout>,
        plen: usize,
        next_seq: u32,
        closed: bool,
        verified: bool,
    ) -> Pushed {
        if self.items.len() == self.max_items {
            return Pushed::Full;
        }
        let idx = self.items.len();
        let base = idx * self.slot_size;
        self.mem[base + VNET_HDR_LEN..base + VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
        self.items.push(Item {
            len: VNET_HDR_LEN + pkt.len(),
            layout,
            gso_size: plen,
            segs: 1,
            next_seq,
            closed,
            verified,
        });
        Pushed::Stored
    }

    /// Finishes every pending packet (headers, checksums, virtio-net header) and hands
    /// each, virtio-net header included, to `emit` in arrival order; then empties.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        for idx in 0..self.items.len() {
            let it = self.items[idx];
            let base = idx * self.slot_size;
            let buf = &mut self.mem[base..base + it.len];
            // A single packet is marked valid only when its checksums were checked here.
            let mut vh = VnetHdr {
                flags: if it.verified { F_DATA_VALID } else { 0 },
                ..VnetHdr::default()
            };
            if let (Some(l), true) = (it.layout, it.segs > 1) {
                let p = &mut buf[VNET_HDR_LEN..];
                let total = p.len();
                if l.v6 {
                    p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
                } else {
                    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
                    ipv4_header_checksum(&mut p[..l.ip_hlen]);
                }
                let t = l.ip_hlen;
                let (src, dst) = l.addrs(p);
                let ps = csum_fold(pseudo_header_sum(src, dst, PROTO_TCP, total - t));
                // Partial checksum: the pseudo-header sum, completed by the kernel.
                p[t + 16..t + 18].copy_from_slice(&ps.to_be_bytes());
                vh = VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type: if l.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                    hdr_len: l.hdr() as u16,
                    gso_size: it.gso_size as u16,
                    csum_start: t as u16,
                    csum_offset: 16,
                };
            }
            vh.encode(buf);
            emit(buf);
        }
        self.items.clear();
    }

    /// The pending output packets (with virtio-net header), for tests.
    pub fn pending(&self) -> usize {
        self.items.len()
    }
}

/// True when the IP length field matches the packet, and the IPv4 header checksum (for
/// IPv4) and the TCP checksum are right.
fn checksums_valid(p: &[u8], l: TcpLayout) -> bool {
    let ip_len = if l.v6 {
        usize::from(u16::from_be_bytes([p[4], p[5]])) + 40
    } else {
        usize::from(u16::from_be_bytes([p[2], p[3]]))
    };
    if ip_len != p.len() {
        return false;
    }
    if !l.v6 && csum_fold(csum_add(0, &p[..l.ip_hlen])) != 0xffff {
        return false;
    }
    let (src, dst) = l.addrs(p);
    let ps = pseudo_header_sum(src, dst, PROTO_TCP, p.len() - l.ip_hlen);
    csum_fold(csum_add(ps, &p[l.ip_hlen..])) == 0xffff
}

fn same_flow(a: &[u8], la: TcpLayout, b: &[u8], lb: TcpLayout) -> bool {
    if la.v6 != lb.v6 {
        return false;
    }
    let (sa, da) = la.addrs(a);
    let (sb, db) = lb.addrs(b);
    // ports are the first four bytes of the TCP header
    sa == sb && da == db && a[la.ip_hlen..la.ip_hlen + 4] == b[lb.ip_hlen..lb.ip_hlen + 4]
}

fn same_headers(a: &[u8], la: TcpLayout, b: &[u8], lb: TcpLayout) -> bool {
    if la.ip_hlen != lb.ip_hlen || la.tcp_hlen != lb.tcp_hlen {
        return false;
    }
    let ip_same = if la.v6 {
        // version/traffic class/flow label and hop limit
        a[0..4] == b[0..4] && a[7] == b[7]
    } else {
        // TOS, DF, TTL, options
        a[1] == b[1]
            && (a[6] & 0x40) == (b[6] & 0x40)
            && a[8] == b[8]
            && a[20..la.ip_hlen] == b[20..lb.ip_hlen]
    };
    let t = la.ip_hlen;
    // ack number, data offset and window must match; options must match byte for byte
    ip_same
        && a[t + 8..t + 12] == b[t + 8..t + 12]
        && a[t + 12] == b[t + 12]
        && a[t + 14..t + 16] == b[t + 14..t + 16]
        && a[t + 20..t + la.tcp_hlen] == b[t + 20..t + lb.tcp_hlen]
}

#[cfg(test)]
mod tests;
