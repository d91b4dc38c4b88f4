//! The make-before-break move of an address from a NIC onto its bridge: the NIC's routes
//! move onto the bridge with the port, and once the configured routes exist the gateways
//! are checked and the old address removed.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Note, Planner};
use crate::model::{Address, BridgeSpec, OWNER_PROTO, Route, TABLE_LOCAL};
use crate::op::Op;

/// An address move from a NIC onto its bridge in progress.
pub(super) struct Move {
    bridge: String,
    port: String,
    addresses: Vec<Address>,
    gateways: Vec<IpAddr>,
}

impl Planner<'_> {
    /// Make-before-break: when a port holds an address its bridge should hold, the bridge
    /// already has it (added by [`Self::bridge_addresses`]) and the port is enslaved (`enslave`);
    /// now the routes move onto the bridge. The gateway check and the removal of the old
    /// address come last ([`Self::finish_moves`]), after the configured routes exist.
    pub(super) fn move_routes_off_port(&mut self, b: &BridgeSpec, port: &str) {
        let mut moved = Vec::new();
        for a in self.state.addresses.iter().filter(|a| a.dev == port) {
            if b.addresses.iter().any(|d| d.addr() == a.net.addr()) {
                moved.push(a.clone());
            } else if !a.is_kernel_managed() {
                self.plan.notes.push(Note::PortAddress {
                    port: port.to_owned(),
                    net: a.net,
                });
            }
        }
        if moved.is_empty() {
            return;
        }
        let subnets: Vec<IpNet> = moved.iter().map(|a| a.net.trunc()).collect();
        let on_port: Vec<Route> = self
            .state
            .routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(port) && !r.is_kernel() && r.table != TABLE_LOCAL)
            .cloned()
            .collect();
        let mut gateways = Vec::new();
        for r in on_port {
            let movable = r
                .gateway
                .is_none_or(|gw| subnets.iter().any(|s| s.contains(&gw)));
            if !movable {
                self.note(Note::PortRouteLeft {
                    port: port.to_owned(),
                    route: r,
                });
                continue;
            }
            // A route the configuration declares becomes ours on the way; others keep their
            // protocol so their owner still recognises them.
            let declared = self
                .desired
                .routes
                .iter()
                .any(|d| d.key() == r.key() && d.gateway == r.gateway);
            let new = Route {
                dev: Some(b.name.clone()),
                protocol: if declared { OWNER_PROTO } else { r.protocol },
                ..r.clone()
            };
            gateways.extend(r.gateway);
            self.push(Op::ReplaceRoute { route: new, was: r });
        }
        self.moves.push(Move {
            bridge: b.name.clone(),
            port: port.to_owned(),
            addresses: moved,
            gateways,
        });
    }

    pub(super) fn finish_moves(&mut self) {
        let moves = std::mem::take(&mut self.moves);
        for m in moves {
            let subnets: Vec<IpNet> = m.addresses.iter().map(|a| a.net.trunc()).collect();
            let mut gateways: Vec<IpAddr> = m.gateways.clone();
            gateways.extend(
                self.desired
                    .routes
                    .iter()
                    .filter_map(|r| r.gateway)
                    .filter(|gw| subnets.iter().any(|s| s.contains(gw))),
            );
            gateways.sort();
            gateways.dedup();
            if gateways.is_empty() {
                self.note(Note::NoGatewayToCheck {
                    bridge: m.bridge.clone(),
                });
            }
            for gw in gateways {
                self.push(Op::CheckGateway {
                    dev: m.bridge.clone(),
                    gateway: gw,
                    timeout: self.desired.move_check_timeout,
                });
            }
            for a in m.addresses {
                self.push(Op::DelAddress {
                    dev: m.port.clone(),
                    net: a.net,
                    proto: a.proto,
                });
            }
        }
    }
}
