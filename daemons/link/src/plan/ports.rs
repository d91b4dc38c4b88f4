//! The port phase: each configured NIC enslaved to its bridge (or brought to its MTU and
//! up) with its bridge-port settings, and the routes of an address moving with it handed
//! to `moves`.

use super::{Note, Planner, Waiting, change};
use crate::model::{BridgeSpec, Link, PortInfo, PortSpec};
use crate::op::{Op, PortOptions, PortWas};

impl Planner<'_> {
    pub(super) fn ports(&mut self, b: &BridgeSpec) {
        if self.blocked.contains(&b.name) || self.link(&b.name).is_none() {
            return;
        }
        for p in &b.ports {
            if self.desired.is_protected(&p.name) {
                continue;
            }
            let Some(l) = self.link(&p.name).cloned() else {
                self.plan.waiting.push(Waiting::Port {
                    port: p.name.clone(),
                    bridge: b.name.clone(),
                });
                continue;
            };
            if let Some(c) = l
                .controller
                .as_deref()
                .filter(|c| self.desired.is_protected(c))
            {
                self.plan.notes.push(Note::PortInProtected {
                    port: p.name.clone(),
                    controller: c.to_owned(),
                });
                continue;
            }
            self.enslave(b, p, &l);
            self.port_options(p);
            self.move_routes_off_port(b, &p.name);
        }
    }

    /// Makes `p` (observed as `l`) a port of `b`, at its MTU and up.
    fn enslave(&mut self, b: &BridgeSpec, p: &PortSpec, l: &Link) {
        let want_mtu = p.mtu.filter(|m| *m != l.mtu);
        if l.controller.as_deref() == Some(b.name.as_str()) {
            self.mtu_and_up(&p.name, want_mtu, l);
            return;
        }
        if let Some(from) = &l.controller {
            self.note(Note::PortTaken {
                port: p.name.clone(),
                from: from.clone(),
            });
        }
        self.push(Op::SetController {
            port: p.name.clone(),
            bridge: b.name.clone(),
            mtu: want_mtu,
            was: PortWas {
                controller: l.controller.clone(),
                mtu: l.mtu,
                up: l.up,
            },
        });
    }

    /// Brings the port's hairpin, learning, cost and priority to `p`'s.
    fn port_options(&mut self, p: &PortSpec) {
        let info = self
            .link(&p.name)
            .and_then(|l| l.port)
            .unwrap_or(PortInfo::KERNEL_DEFAULT);
        let mut set = PortOptions::default();
        let mut was = PortOptions::default();
        change(p.hairpin, info.hairpin, &mut set.hairpin, &mut was.hairpin);
        change(
            p.learning,
            info.learning,
            &mut set.learning,
            &mut was.learning,
        );
        change(p.cost, info.cost, &mut set.cost, &mut was.cost);
        change(
            p.priority,
            info.priority,
            &mut set.priority,
            &mut was.priority,
        );
        if !set.is_empty() {
            self.push(Op::SetPortOptions {
                port: p.name.clone(),
                set,
                was,
            });
        }
    }
}
