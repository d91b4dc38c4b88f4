//! Pure: the longest-prefix-match AllowedIPs table (cryptokey routing).
//!
//! One hash map per prefix length that is in use, probed from the longest length down.
//! A handful of distinct lengths is the norm (/32, /24, /128, /64), so a lookup is a
//! few hash probes with a cheap multiplicative hasher, and inserts are O(1).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;

/// A cheap hasher for the masked 128-bit addresses used as keys.
#[derive(Default, Debug, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }
}

type Map<T> = HashMap<u128, T, BuildHasherDefault<AddrHasher>>;

#[derive(Debug, Clone)]
struct Family<T> {
    /// (prefix length, masked address -> value), longest length first.
    levels: Vec<(u8, Map<T>)>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family { levels: Vec::new() }
    }
}

fn mask(addr: u128, len: u8, bits: u8) -> u128 {
    if len == 0 {
        return 0;
    }
    // Addresses are stored left-aligned in `bits` bits (32 or 128).
    let shift = u32::from(bits - len);
    (addr >> shift) << shift
}

impl<T: Clone> Family<T> {
    fn insert(&mut self, addr: u128, len: u8, bits: u8, v: T) -> Option<T> {
        let key = mask(addr, len, bits);
        let pos = match self.levels.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(p) => p,
            Err(p) => {
                self.levels.insert(p, (len, Map::default()));
                p
            }
        };
        self.levels[pos].1.insert(key, v)
    }

    fn remove(&mut self, addr: u128, len: u8, bits: u8) -> Option<T> {
        let key = mask(addr, len, bits);
        let pos = self.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        let out = self.levels[pos].1.remove(&key);
        if self.levels[pos].1.is_empty() {
            self.levels.remove(pos);
        }
        out
    }

    fn lookup(&self, addr: u128, bits: u8) -> Option<&T> {
        self.levels
            .iter()
            .find_map(|(len, m)| m.get(&mask(addr, *len, bits)))
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for (_, m) in &mut self.levels {
            m.retain(|_, v| keep(v));
        }
        self.levels.retain(|(_, m)| !m.is_empty());
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|(_, m)| m.len()).sum()
    }
}

/// A longest-prefix-match table from IP networks to values (peer handles).
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Family<T>,
    v6: Family<T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: Family::default(),
            v6: Family::default(),
        }
    }
}

impl<T: Clone> AllowedIps<T> {
    /// Creates an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts (or replaces) a network; returns the previous value for exactly that network.
    pub fn insert(&mut self, net: IpNet, v: T) -> Option<T> {
        match net {
            IpNet::V4(n) => self
                .v4
                .insert(u128::from(u32::from(n.addr())), n.prefix_len(), 32, v),
            IpNet::V6(n) => self.v6.insert(u128::from(n.addr()), n.prefix_len(), 128, v),
        }
    }

    /// Removes exactly this network.
    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        match net {
            IpNet::V4(n) => self
                .v4
                .remove(u128::from(u32::from(n.addr())), n.prefix_len(), 32),
            IpNet::V6(n) => self.v6.remove(u128::from(n.addr()), n.prefix_len(), 128),
        }
    }

    /// The value stored for exactly this network.
    pub fn get_exact(&self, net: IpNet) -> Option<&T> {
        let (fam, addr, len, bits) = match net {
            IpNet::V4(n) => (
                &self.v4,
                u128::from(u32::from(n.addr())),
                n.prefix_len(),
                32,
            ),
            IpNet::V6(n) => (&self.v6, u128::from(n.addr()), n.prefix_len(), 128),
        };
        let pos = fam.levels.binary_search_by(|(l, _)| len.cmp(l)).ok()?;
        fam.levels[pos].1.get(&mask(addr, len, bits))
    }

    /// Finds the value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), 128),
        }
    }

    /// Finds the value for a raw IPv4 address in network byte order.
    pub fn lookup_v4(&self, octets: [u8; 4]) -> Option<&T> {
        self.v4.lookup(u128::from(u32::from_be_bytes(octets)), 32)
    }

    /// Finds the value for a raw IPv6 address in network byte order.
    pub fn lookup_v6(&self, octets: [u8; 16]) -> Option<&T> {
        self.v6.lookup(u128::from_be_bytes(octets), 128)
    }

    /// Keeps only the entries whose value passes `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.v4.retain(&mut keep);
        self.v6.retain(&mut keep);
    }

    /// Number of networks in the table.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when the table holds no network.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("10.1.2.3/32"), 3);
        t.insert(net("0.0.0.0/0"), 4);
        t.insert(net("fd00::/8"), 5);
        t.insert(net("fd00:1::/64"), 6);
        let cases = [
            ("10.1.2.3", Some(3)),
            ("10.1.2.4", Some(2)),
            ("10.2.0.1", Some(1)),
            ("192.0.2.1", Some(4)),
            ("fd00:1::5", Some(6)),
            ("fd00:2::5", Some(5)),
            ("2001:db8::1", None),
        ];
        for (addr, want) in cases {
            assert_eq!(t.lookup(addr.parse().unwrap()).copied(), want, "{addr}");
        }
    }

    #[test]
    fn host_bits_are_ignored_and_remove_works() {
        let mut t = AllowedIps::new();
        t.insert(net("10.1.2.99/24"), 1);
        assert_eq!(t.lookup("10.1.2.1".parse().unwrap()), Some(&1));
        assert_eq!(t.remove(net("10.1.2.0/24")), Some(1));
        assert!(t.is_empty());
        assert_eq!(t.lookup("10.1.2.1".parse().unwrap()), None);
    }

    #[test]
    fn retain_drops_a_peer() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.retain(|v| *v != 2);
        assert_eq!(t.lookup("10.1.0.1".parse().unwrap()), Some(&1));
        assert_eq!(t.len(), 1);
    }

    fn naive(entries: &[(IpNet, u32)], addr: IpAddr) -> Option<u32> {
        entries
            .iter()
            .filter(|(n, _)| n.contains(&addr))
            .max_by_key(|(n, _)| n.prefix_len())
            .map(|(_, v)| *v)
    }

    proptest! {
        #[test]
        fn matches_a_linear_scan(
            nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 1..40),
        ) {
            let mut t = AllowedIps::new();
            // Later inserts of the same network replace earlier ones, as in the table.
            let mut entries: Vec<(IpNet, u32)> = Vec::new();
            for (i, (a, l)) in nets.iter().enumerate() {
                let n: IpNet = ipnet::Ipv4Net::new((*a).into(), *l).unwrap().trunc().into();
                entries.retain(|(e, _)| *e != n);
                entries.push((n, i as u32));
                t.insert(n, i as u32);
            }
            for p in probes.iter().chain(nets.iter().map(|(a, _)| a)) {
                let addr = IpAddr::V4((*p).into());
                prop_assert_eq!(t.lookup(addr).copied(), naive(&entries, addr));
            }
        }
    }
}
