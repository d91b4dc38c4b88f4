//! Builders of desired and observed states for the pure tests.

#![allow(dead_code)]

use std::path::Path;

use edge_link::model::{
    Address, BridgeInfo, Desired, Link, OWNER_PROTO, Observed, PortInfo, Route, SysctlKey,
    TABLE_MAIN,
};

/// The desired state of the reference deployment (`config/edge.toml`).
pub fn reference_desired() -> Desired {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    let loaded = edge_config::parse(&path, &text).expect("reference config is valid");
    Desired::from_config(loaded.config.link.as_ref().expect("[link]"))
}

/// A desired state from a `[link]` snippet (a `version = 1` header is added).
pub fn desired_from(toml: &str) -> Desired {
    let text = format!("version = 1\n{toml}");
    let loaded = match edge_config::parse(Path::new("test.toml"), &text) {
        Ok(l) => l,
        Err(d) => panic!("test config refused:\n{d}"),
    };
    Desired::from_config(loaded.config.link.as_ref().expect("[link]"))
}

/// A physical-like NIC (veth here), up, no controller.
pub fn nic(name: &str, index: u32) -> Link {
    Link {
        name: name.into(),
        index,
        kind: Some("veth".into()),
        controller: None,
        mtu: 1500,
        up: true,
        lower_up: true,
        bridge: None,
        port: None,
    }
}

/// A bridge with STP off, forward delay 0, snooping on.
pub fn bridge(name: &str, index: u32) -> Link {
    Link {
        name: name.into(),
        index,
        kind: Some("bridge".into()),
        controller: None,
        mtu: 1500,
        up: true,
        lower_up: true,
        bridge: Some(BridgeInfo {
            stp: false,
            forward_delay_cs: 0,
            multicast_snooping: true,
            vlan_filtering: false,
        }),
        port: None,
    }
}

/// `link` enslaved to `bridge` with the kernel's default port settings.
pub fn enslaved(mut link: Link, bridge: &str) -> Link {
    link.controller = Some(bridge.into());
    link.port = Some(PortInfo::KERNEL_DEFAULT);
    link
}

/// An address.
pub fn addr(dev: &str, net: &str, proto: u8) -> Address {
    Address {
        dev: dev.into(),
        net: net.parse().expect("address"),
        proto,
    }
}

/// An IPv4 route in the main table.
pub fn route(dst: &str, via: Option<&str>, dev: &str, metric: u32, proto: u8) -> Route {
    Route {
        table: TABLE_MAIN,
        dst: dst.parse().expect("destination"),
        metric,
        gateway: via.map(|v| v.parse().expect("gateway")),
        dev: Some(dev.into()),
        protocol: proto,
    }
}

/// The user's host before edge-link: three NICs, enp3s0f0 carrying 192.198.0.30/24 and the
/// default route (as systemd-networkd left them, proto static), the admin NIC with its own
/// address and route.
pub fn host_before() -> Observed {
    let mut o = Observed::default();
    o.links.insert("lo".into(), {
        let mut l = nic("lo", 1);
        l.kind = None;
        l
    });
    o.links.insert("enp3s0f0".into(), nic("enp3s0f0", 2));
    o.links.insert("enp4s0f0".into(), nic("enp4s0f0", 3));
    o.links.insert("enp4s0f1".into(), nic("enp4s0f1", 4));
    o.addresses.insert(addr("enp3s0f0", "192.198.0.30/24", 0));
    o.addresses.insert(addr("enp4s0f1", "192.168.1.10/24", 0));
    o.routes
        .insert(route("0.0.0.0/0", Some("192.198.0.1"), "enp3s0f0", 100, 4));
    o.routes
        .insert(route("192.198.0.0/24", None, "enp3s0f0", 0, 2));
    o.routes
        .insert(route("192.168.1.0/24", None, "enp4s0f1", 0, 2));
    for (k, v) in [
        (SysctlKey::IpForward, "0"),
        (SysctlKey::Ipv6Forwarding, "0"),
        (SysctlKey::RpFilterAll, "0"),
        (SysctlKey::BridgeNfCallIptables, "1"),
        (SysctlKey::BridgeNfCallIp6tables, "1"),
        (SysctlKey::BridgeNfCallArptables, "1"),
    ] {
        o.sysctls.insert(k, v.into());
    }
    o
}

/// The tag of our objects.
pub const OURS: u8 = OWNER_PROTO;
