//! The sysctl phases: global keys first, per-interface keys once their interfaces exist.

use super::{Note, Planner};
use crate::model::SysctlKey;
use crate::op::Op;

impl Planner<'_> {
    pub(super) fn global_sysctls(&mut self) {
        for (key, value) in &self.desired.sysctls {
            if key.interface().is_some() {
                continue;
            }
            match self.state.sysctls.get(key) {
                Some(cur) if cur == value => {}
                Some(cur) => {
                    let was = Some(cur.clone());
                    self.push(Op::SetSysctl {
                        key: key.clone(),
                        value: value.clone(),
                        was,
                    });
                }
                // Without the file the feature is absent, which is what "0" asks for.
                None if value == "0" => {}
                None => self.note(Note::SysctlMissing {
                    key: key.clone(),
                    value: value.clone(),
                }),
            }
        }
    }

    pub(super) fn interface_sysctls(&mut self) {
        for (key, value) in &self.desired.sysctls {
            let Some(iface) = key.interface() else {
                continue;
            };
            if self.link(iface).is_none() || self.blocked.contains(iface) {
                continue;
            }
            let cur = self.state.sysctls.get(key).cloned();
            if cur.as_ref() != Some(value) {
                self.push(Op::SetSysctl {
                    key: key.clone(),
                    value: value.clone(),
                    was: cur,
                });
            }
            if let SysctlKey::RpFilter(_) = key
                && let Some(all) = self.state.sysctls.get(&SysctlKey::RpFilterAll)
                && all.as_str() > value.as_str()
            {
                self.note(Note::RpFilterCapped {
                    iface: iface.to_owned(),
                    wanted: value.clone(),
                    all: all.clone(),
                });
            }
        }
    }
}
