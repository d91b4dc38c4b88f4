//! The route phase: configured routes added on the interface that reaches their gateway
//! (after the addresses that make it reachable), and routes we tagged that the
//! configuration dropped removed.

use std::net::IpAddr;

use super::{Note, Planner, Waiting};
use crate::model::{Address, Route};
use crate::op::Op;

impl Planner<'_> {
    /// The interface through which `gw` is reachable: one whose address subnet holds it,
    /// a managed bridge first.
    fn dev_for_gateway(&self, gw: IpAddr) -> Option<String> {
        let holders: Vec<&Address> = self
            .state
            .addresses
            .iter()
            .filter(|a| a.net.trunc().contains(&gw))
            .filter(|a| !self.desired.is_protected(&a.dev))
            .collect();
        holders
            .iter()
            .find(|a| self.desired.is_bridge(&a.dev))
            .or(holders.first())
            .map(|a| a.dev.clone())
    }

    pub(super) fn routes(&mut self) {
        for r in &self.desired.routes {
            self.route(r);
        }
        self.stale_routes();
    }

    /// Plans configured route `r`: its interface found, waited for or refused, then added
    /// or taken over unless a foreign route holds its key.
    fn route(&mut self, r: &Route) {
        let dev = match (&r.dev, r.gateway) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(gw)) => self.dev_for_gateway(gw),
            (None, None) => None,
        };
        let Some(dev) = dev else {
            self.note(Note::GatewayUnreachable { route: r.clone() });
            return;
        };
        if self.desired.is_protected(&dev) || self.blocked.contains(&dev) {
            return;
        }
        let want = Route {
            dev: Some(dev.clone()),
            ..r.clone()
        };
        if self.link(&dev).is_none() {
            self.plan.waiting.push(Waiting::Route { route: want });
            return;
        }
        if let Some(gw) = r.gateway {
            let reachable = self
                .state
                .addresses
                .iter()
                .any(|a| a.dev == dev && a.net.trunc().contains(&gw));
            if !reachable {
                self.note(Note::GatewayUnreachable { route: want });
                return;
            }
        }
        self.claim_route_key(r, want);
    }

    /// Adds `want` (configured route `r` on its interface), or replaces our route holding
    /// its key; a route we do not own there (or any on a protected interface) is a conflict.
    fn claim_route_key(&mut self, r: &Route, want: Route) {
        let at_key: Vec<Route> = self
            .state
            .routes
            .iter()
            .filter(|o| o.key() == r.key())
            .cloned()
            .collect();
        if at_key.iter().any(|o| r.satisfied_by(o)) {
            return;
        }
        let on_protected = |o: &Route| {
            o.dev
                .as_deref()
                .is_some_and(|d| self.desired.is_protected(d))
        };
        if let Some(o) = at_key.iter().find(|o| on_protected(o)) {
            // Even our own route there stays: the key is taken on a NIC we never touch.
            self.note(Note::RouteConflict {
                wanted: want,
                holder: o.clone(),
            });
        } else if let Some(o) = at_key.iter().find(|o| o.is_ours()) {
            self.push(Op::ReplaceRoute {
                route: want,
                was: o.clone(),
            });
        } else if let Some(o) = at_key.first() {
            self.note(Note::RouteConflict {
                wanted: want,
                holder: o.clone(),
            });
        } else {
            self.push(Op::AddRoute { route: want });
        }
    }

    /// Removes routes we tagged whose key the configuration no longer declares.
    fn stale_routes(&mut self) {
        let stale: Vec<Route> = self
            .state
            .routes
            .iter()
            .filter(|o| o.is_ours())
            .filter(|o| !self.desired.routes.iter().any(|r| r.key() == o.key()))
            .cloned()
            .collect();
        for o in stale {
            if o.dev
                .as_deref()
                .is_some_and(|d| self.desired.is_protected(d))
            {
                self.note(Note::OwnedOnProtected {
                    what: format!("route {o}"),
                });
                continue;
            }
            self.push(Op::DelRoute { route: o });
        }
    }
}
