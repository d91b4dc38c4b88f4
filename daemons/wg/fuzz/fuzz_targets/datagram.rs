//! Fuzz target: the receive path of the device (type dispatch, mac1/cookie checks,
//! handshake identification, decryption, source check, TUN coalescing). Input: a
//! sequence of length-prefixed datagrams; mode 1 mutates a valid initiation from a
//! configured peer so the fuzzer gets past mac1 into the handshake code.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use edge_wg::device::Device;
use edge_wg::model::{DeviceConfig, Key, PeerConfig, SecretKey};
use libfuzzer_sys::fuzz_target;

const DEV_KEY: [u8; 32] = [7; 32];
const PEER_KEY: [u8; 32] = [9; 32];

fn device() -> &'static Arc<Device> {
    static DEV: OnceLock<Arc<Device>> = OnceLock::new();
    DEV.get_or_init(|| {
        let dev = Device::detached("fuzz0");
        let peer_pub = Key(PEER_KEY).public_from_private();
        let mut cfg = DeviceConfig {
            private_key: Some(SecretKey(Key(DEV_KEY))),
            ..DeviceConfig::default()
        };
        cfg.peers.insert(
            peer_pub,
            PeerConfig {
                public_key: peer_pub,
                allowed_ips: vec!["10.0.0.2/32".parse().unwrap()],
                endpoint: Some("192.0.2.2:51820".parse().unwrap()),
                ..PeerConfig::default()
            },
        );
        dev.apply(&cfg, &[]).unwrap();
        dev
    })
}

fuzz_target!(|data: &[u8]| {
    let dev = device();
    let src: SocketAddr = "192.0.2.2:51820".parse().unwrap();
    let mut sink = |b: &[u8]| assert!(b.len() >= 10);
    if data.first() == Some(&1) {
        let dev_pub = PublicKey::from(Key(DEV_KEY).public_from_private().0);
        let mut t = Tunn::new(StaticSecret::from(PEER_KEY), dev_pub, None, None, 1, None);
        let mut buf = [0u8; 256];
        if let TunnResult::WriteToNetwork(p) = t.format_handshake_initiation(&mut buf, true) {
            let mut init = p.to_vec();
            for (i, b) in data[1..].iter().enumerate().take(64) {
                let at = (*b as usize * 7 + i) % init.len();
                init[at] ^= data.get(i + 65).copied().unwrap_or(0);
            }
            dev.feed_datagram(&init, src, &mut sink);
        }
        return;
    }
    let mut rest = data;
    while rest.len() >= 2 {
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        dev.feed_datagram(&rest[2..2 + n], src, &mut sink);
        rest = &rest[2 + n..];
    }
});
