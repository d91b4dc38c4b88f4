use super::*;

/// Builds an IPv4 or IPv6 TCP packet with a correct checksum.
fn tcp_packet(v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ip_hlen = if v6 { 40 } else { 20 };
    let tcp_hlen = 32; // with 12 bytes of options (NOP NOP timestamp)
    let total = ip_hlen + tcp_hlen + payload.len();
    let mut p = vec![0u8; total];
    if v6 {
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        p[6] = PROTO_TCP;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    } else {
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[4..6].copy_from_slice(&77u16.to_be_bytes());
        p[6] = 0x40;
        p[8] = 64;
        p[9] = PROTO_TCP;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
        ipv4_header_checksum(&mut p[..20]);
    }
    let t = ip_hlen;
    p[t..t + 2].copy_from_slice(&40000u16.to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&5201u16.to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    p[t + 8..t + 12].copy_from_slice(&999u32.to_be_bytes());
    p[t + 12] = ((tcp_hlen / 4) as u8) << 4;
    p[t + 13] = flags;
    p[t + 14..t + 16].copy_from_slice(&512u16.to_be_bytes());
    p[t + 20..t + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    p[t + tcp_hlen..].copy_from_slice(payload);
    let l = tcp_layout(&p).unwrap();
    let (s, d) = l.addrs(&p);
    let ps = pseudo_header_sum(s, d, PROTO_TCP, total - t);
    let c = !csum_fold(csum_add(ps, &p[t..]));
    p[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
    p
}

fn tcp_checksum_ok(p: &[u8]) -> bool {
    let l = tcp_layout(p).unwrap();
    let (s, d) = l.addrs(p);
    let ps = pseudo_header_sum(s, d, PROTO_TCP, p.len() - l.ip_hlen);
    csum_fold(csum_add(ps, &p[l.ip_hlen..])) == 0xffff
}

#[test]
fn checksum_matches_rfc1071_example() {
    // RFC 1071 §3 example bytes: sum 0xddf2.
    let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
    assert_eq!(csum_fold(csum_add(0, &data)), 0xddf2);
    // odd length pads with a zero byte
    assert_eq!(csum_fold(csum_add(0, &[0x12])), 0x1200);
}

#[test]
fn vnet_header_round_trips() {
    let h = VnetHdr {
        flags: 1,
        gso_type: 4,
        hdr_len: 72,
        gso_size: 1368,
        csum_start: 40,
        csum_offset: 16,
    };
    let mut b = [0u8; 10];
    h.encode(&mut b);
    assert_eq!(VnetHdr::decode(&b), Ok(h));
    assert_eq!(VnetHdr::decode(&b[..9]), Err(OffloadError::ParseVnetHeader));
}

fn split_then_coalesce(v6: bool) {
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut sp = tcp_packet(v6, 1000, TCP_ACK | TCP_PSH, &payload);
    let l = tcp_layout(&sp).unwrap();
    // As the kernel hands it over: partial checksum in the TCP field.
    let (s, d) = l.addrs(&sp);
    let ps = csum_fold(pseudo_header_sum(s, d, PROTO_TCP, sp.len() - l.ip_hlen));
    let t = l.ip_hlen;
    sp[t + 16..t + 18].copy_from_slice(&ps.to_be_bytes());
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: l.hdr() as u16,
        gso_size: 1300,
        csum_start: t as u16,
        csum_offset: 16,
    };
    let mut scratch = vec![0u8; 2000];
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let n = gso_split(&sp, &h, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
    assert_eq!(n, 8);
    let mut got = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        assert!(tcp_checksum_ok(s), "segment {i} checksum");
        let sl = tcp_layout(s).unwrap();
        let seq = u32::from_be_bytes(s[t + 4..t + 8].try_into().unwrap());
        assert_eq!(seq, 1000 + 1300 * i as u32);
        let psh = s[t + 13] & TCP_PSH != 0;
        assert_eq!(psh, i == 7, "PSH only on the last segment");
        if !v6 {
            assert_eq!(
                csum_fold(csum_add(0, &s[..20])),
                0xffff,
                "ipv4 header checksum"
            );
            assert_eq!(u16::from_be_bytes([s[2], s[3]]) as usize, s.len());
        }
        got.extend_from_slice(&s[sl.hdr()..]);
    }
    assert_eq!(got, payload);

    // Coalesce them back into one super-packet.
    let mut c = Coalescer::new(4);
    for s in &segs {
        assert_ne!(c.push(s), Pushed::Full);
    }
    assert_eq!(c.pending(), 1);
    let mut out = Vec::new();
    c.flush(|b| out.push(b.to_vec()));
    assert_eq!(out.len(), 1);
    let vh = VnetHdr::decode(&out[0]).unwrap();
    assert_eq!(vh.flags, F_NEEDS_CSUM);
    assert_eq!(vh.gso_size, 1300);
    let mut p = out[0][VNET_HDR_LEN..].to_vec();
    assert_eq!(&p[l.hdr()..], &payload[..]);
    assert!(complete_checksum(&mut p, t, 16));
    assert!(tcp_checksum_ok(&p));
    assert!(c.is_empty());
}

#[test]
fn split_and_coalesce_ipv4() {
    split_then_coalesce(false);
}

#[test]
fn split_and_coalesce_ipv6() {
    split_then_coalesce(true);
}

#[test]
fn out_of_order_and_other_flows_are_not_merged() {
    let a = tcp_packet(false, 0, TCP_ACK, &[1; 100]);
    let b = tcp_packet(false, 200, TCP_ACK, &[2; 100]); // gap
    let pure_ack = tcp_packet(false, 300, TCP_ACK, &[]);
    let mut c = Coalescer::new(8);
    assert_eq!(c.push(&a), Pushed::Stored);
    assert_eq!(c.push(&b), Pushed::Stored);
    assert_eq!(c.push(&pure_ack), Pushed::Stored);
    let mut flags = Vec::new();
    c.flush(|buf| {
        let vh = VnetHdr::decode(buf).unwrap();
        assert_eq!(vh.gso_type, GSO_NONE);
        flags.push(vh.flags);
    });
    // Data segments were checked here; the bare ACK was not: the kernel checks it.
    assert_eq!(flags, vec![F_DATA_VALID, F_DATA_VALID, 0]);
}

/// Splits a 10,000-byte super-packet into eight 1300-byte segments (as a sender's GSO
/// would), every one with correct checksums.
fn segments(v6: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 13 + 1) as u8).collect();
    let sp = tcp_packet(v6, 5000, TCP_ACK | TCP_PSH, &payload);
    let l = tcp_layout(&sp).unwrap();
    let h = VnetHdr {
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: l.hdr() as u16,
        gso_size: 1300,
        ..VnetHdr::default()
    };
    let mut scratch = vec![0u8; 2000];
    let mut segs = Vec::new();
    gso_split(&sp, &h, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
    (payload, segs)
}

/// One output packet as the kernel gets it: flags, gso type, TCP payload, sequence
/// number, the whole IP packet.
type Out = (u8, u8, Vec<u8>, u32, Vec<u8>);

/// What the kernel gets for each output packet.
fn flushed(c: &mut Coalescer) -> Vec<Out> {
    let mut out = Vec::new();
    c.flush(|buf| {
        let vh = VnetHdr::decode(buf).unwrap();
        let p = buf[VNET_HDR_LEN..].to_vec();
        // A flipped header byte may leave no TCP packet to read: (flags, gso, no data).
        let Some(l) = tcp_layout(&p) else {
            out.push((vh.flags, vh.gso_type, Vec::new(), 0, p));
            return;
        };
        let t = l.ip_hlen;
        let seq = u32::from_be_bytes(p[t + 4..t + 8].try_into().unwrap());
        out.push((vh.flags, vh.gso_type, p[l.hdr()..].to_vec(), seq, p));
    });
    out
}

#[test]
fn a_corrupted_segment_is_never_merged_nor_marked_valid() {
    for v6 in [false, true] {
        let (payload, mut segs) = segments(v6);
        let hdr = tcp_layout(&segs[3]).unwrap().hdr();
        segs[3][hdr + 100] ^= 0x01; // one flipped payload bit, checksum now wrong
        let mut c = Coalescer::new(8);
        for s in &segs {
            assert_ne!(c.push(s), Pushed::Full);
        }
        let out = flushed(&mut c);
        assert_eq!(
            out.len(),
            3,
            "segments 0-2, the bad one alone, 4-7 (v6={v6})"
        );
        let gso = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
        assert_eq!((out[0].0, out[0].1), (F_NEEDS_CSUM, gso));
        assert_eq!(out[0].2, payload[..3 * 1300]);
        assert_eq!((out[1].0, out[1].1), (0, GSO_NONE), "not marked valid");
        assert_eq!(out[1].3, 5000 + 3 * 1300);
        assert!(
            !tcp_checksum_ok(&out[1].4),
            "the kernel will see the bad checksum"
        );
        assert_eq!((out[2].0, out[2].1), (F_NEEDS_CSUM, gso));
        assert_eq!(out[2].2, payload[4 * 1300..]);
        assert_eq!(out[2].3, 5000 + 4 * 1300);
    }
}

#[test]
fn a_corrupted_ipv4_header_is_never_merged() {
    let (_, mut segs) = segments(false);
    segs[2][5] ^= 0x40; // the IP ID: not compared between segments, so only the checksum shows it
    let mut c = Coalescer::new(8);
    for s in &segs {
        assert_ne!(c.push(s), Pushed::Full);
    }
    let out = flushed(&mut c);
    let flags: Vec<u8> = out.iter().map(|o| o.0).collect();
    assert_eq!(flags, vec![F_NEEDS_CSUM, 0, F_NEEDS_CSUM]);
    assert_eq!(out[1].3, 5000 + 2 * 1300);
}

proptest::proptest! {
    /// Whatever byte of whatever segment is flipped, the kernel never gets it marked
    /// valid: every packet sent with a trusted checksum carries exactly the sender's bytes.
    #[test]
    fn no_flipped_byte_ever_reaches_the_kernel_as_valid(
        v6 in proptest::bool::ANY,
        seg in 0usize..8,
        at in 0usize..1400,
        bit in 0u8..8,
    ) {
        let (payload, mut segs) = segments(v6);
        let at = at % segs[seg].len();
        segs[seg][at] ^= 1 << bit;
        let mut c = Coalescer::new(8);
        for s in &segs {
            if c.push(s) == Pushed::Full {
                proptest::prop_assert!(false, "8 slots suffice for 8 segments");
            }
        }
        for (flags, _, data, seq, p) in flushed(&mut c) {
            if flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0 {
                proptest::prop_assert!(tcp_layout(&p).is_some());
                let l = tcp_layout(&p).unwrap();
                let ip_len = if l.v6 {
                    usize::from(u16::from_be_bytes([p[4], p[5]])) + 40
                } else {
                    usize::from(u16::from_be_bytes([p[2], p[3]]))
                };
                proptest::prop_assert_eq!(ip_len, p.len(), "length field");
                let off = seq.wrapping_sub(5000) as usize;
                proptest::prop_assert!(off + data.len() <= payload.len());
                proptest::prop_assert_eq!(&data[..], &payload[off..off + data.len()]);
            }
        }
    }
}

#[test]
fn full_coalescer_asks_for_a_flush() {
    let mut c = Coalescer::new(1);
    let a = tcp_packet(false, 0, TCP_ACK, &[1; 100]);
    let b = tcp_packet(true, 0, TCP_ACK, &[1; 100]);
    assert_eq!(c.push(&a), Pushed::Stored);
    assert_eq!(c.push(&b), Pushed::Full);
}

#[test]
fn plain_packet_with_partial_checksum_is_completed() {
    let mut p = tcp_packet(false, 5, TCP_ACK, &[9; 33]);
    let l = tcp_layout(&p).unwrap();
    let (s, d) = l.addrs(&p);
    let ps = csum_fold(pseudo_header_sum(s, d, PROTO_TCP, p.len() - 20));
    p[36..38].copy_from_slice(&ps.to_be_bytes());
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 20,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    let mut scratch = vec![0u8; 200];
    let mut out = Vec::new();
    gso_split(&p, &h, &mut scratch, |s| out.push(s.to_vec())).unwrap();
    assert!(tcp_checksum_ok(&out[0]));
}

#[test]
fn flow_hash_separates_flows_and_keeps_one_flow_together() {
    let a1 = tcp_packet(false, 0, TCP_ACK, &[1; 10]);
    let a2 = tcp_packet(false, 500, TCP_ACK | TCP_PSH, &[2; 99]);
    assert_eq!(flow_hash(&a1), flow_hash(&a2));
    let mut other = a1.clone();
    other[20] ^= 1; // another source port
    assert_ne!(flow_hash(&a1), flow_hash(&other));
    assert_eq!(flow_hash(&[]), 0);
    assert_eq!(flow_hash(&[0x45; 10]), 0);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let h = VnetHdr {
        gso_type: GSO_TCPV4,
        gso_size: 100,
        ..VnetHdr::default()
    };
    let mut scratch = vec![0u8; 200];
    for len in 0..80 {
        let junk = vec![0x45u8; len];
        let _ = gso_split(&junk, &h, &mut scratch, |_| {});
    }
    assert_eq!(
        gso_split(&[0x45; 10], &h, &mut scratch, |_| {}),
        Err(OffloadError::ParseHeaders)
    );
}
