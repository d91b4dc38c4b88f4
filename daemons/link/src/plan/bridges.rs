//! The bridge phases: each configured bridge created or brought to its settings, its
//! addresses added, and the addresses we tagged that no bridge declares any more removed.

use super::{Note, Planner, change};
use crate::model::{Address, BridgeInfo, BridgeSpec, OWNER_PROTO};
use crate::op::{BridgeOptions, NewBridge, Op};

impl Planner<'_> {
    pub(super) fn bridge(&mut self, b: &BridgeSpec) {
        if self.desired.is_protected(&b.name) {
            return;
        }
        match self.link(&b.name) {
            None => self.push(Op::CreateBridge(NewBridge {
                name: b.name.clone(),
                mtu: b.mtu,
                stp: b.stp,
                forward_delay_cs: b.forward_delay_cs,
                multicast_snooping: b.multicast_snooping,
            })),
            Some(l) if !l.is_bridge() => {
                let kind = l.kind.clone().unwrap_or_else(|| "physical".into());
                self.blocked.insert(b.name.clone());
                self.note(Note::NotABridge {
                    name: b.name.clone(),
                    kind,
                });
                return;
            }
            Some(_) => {}
        }
        let Some(l) = self.link(&b.name).cloned() else {
            return;
        };
        if let Some(info) = l.bridge {
            self.bridge_options(b, info);
        }
        self.mtu_and_up(&b.name, b.mtu.filter(|m| *m != l.mtu), &l);
    }

    /// Brings an existing bridge's STP, forward delay, snooping and VLAN filtering to `b`'s.
    fn bridge_options(&mut self, b: &BridgeSpec, info: BridgeInfo) {
        let mut set = BridgeOptions::default();
        let mut was = BridgeOptions::default();
        change(Some(b.stp), info.stp, &mut set.stp, &mut was.stp);
        change(
            Some(b.forward_delay_cs),
            info.forward_delay_cs,
            &mut set.forward_delay_cs,
            &mut was.forward_delay_cs,
        );
        change(
            Some(b.multicast_snooping),
            info.multicast_snooping,
            &mut set.multicast_snooping,
            &mut was.multicast_snooping,
        );
        if !set.is_empty() {
            self.push(Op::SetBridgeOptions {
                name: b.name.clone(),
                set,
                was,
            });
        }
        if info.vlan_filtering != b.vlan_filtering {
            if self.state.caps.no_vlan_filtering {
                if b.vlan_filtering {
                    self.note(Note::VlanFilteringUnsupported {
                        bridge: b.name.clone(),
                    });
                }
            } else {
                self.push(Op::SetVlanFiltering {
                    name: b.name.clone(),
                    on: b.vlan_filtering,
                });
            }
        }
    }

    pub(super) fn bridge_addresses(&mut self, b: &BridgeSpec) {
        if self.blocked.contains(&b.name) || self.link(&b.name).is_none() {
            return;
        }
        for net in &b.addresses {
            let present = self
                .state
                .addresses
                .iter()
                .any(|a| a.dev == b.name && a.net == *net);
            if !present {
                // The host already holds it on a port about to be moved onto the bridge:
                // DAD could only find the host itself, and would keep the bridge's copy
                // unusable while the move runs.
                let nodad = net.addr().is_ipv6()
                    && self.state.addresses.iter().any(|a| {
                        a.net.addr() == net.addr() && b.ports.iter().any(|p| p.name == a.dev)
                    });
                self.push(Op::AddAddress {
                    dev: b.name.clone(),
                    net: *net,
                    proto: OWNER_PROTO,
                    nodad,
                });
            }
        }
    }

    /// Removes addresses we tagged that the configuration no longer asks for.
    pub(super) fn stale_addresses(&mut self) {
        let stale: Vec<Address> = self
            .state
            .addresses
            .iter()
            .filter(|a| a.is_ours())
            .filter(|a| {
                !self
                    .desired
                    .bridges
                    .iter()
                    .any(|b| b.name == a.dev && b.addresses.contains(&a.net))
            })
            .cloned()
            .collect();
        for a in stale {
            if self.desired.is_protected(&a.dev) {
                self.note(Note::OwnedOnProtected {
                    what: format!("address {} on `{}`", a.net, a.dev),
                });
                continue;
            }
            self.push(Op::DelAddress {
                dev: a.dev,
                net: a.net,
                proto: a.proto,
            });
        }
    }
}
