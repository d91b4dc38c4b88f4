//! Fuzz target: TUN offload math on hostile input: a virtio-net header plus packet
//! (GSO split, checksum completion), then GRO coalescing of whatever came out.
#![no_main]

use edge_wg::offload::{Coalescer, Pushed, VnetHdr, gso_split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = VnetHdr::decode(data) else { return };
    let pkt = &data[10..];
    let mut scratch = vec![0u8; 65535];
    let mut co = Coalescer::new(4);
    let mut out = 0usize;
    let _ = gso_split(pkt, &h, &mut scratch, |seg| {
        if co.push(seg) == Pushed::Full {
            co.flush(|b| out += b.len());
            let _ = co.push(seg);
        }
    });
    co.flush(|b| out += b.len());
});
