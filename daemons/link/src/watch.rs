//! Pure: which bridge ports (the NICs of `[[link.bridge]] ports`) to report as down or
//! missing, and when to report them back. A NIC is reported once it has had no carrier, or
//! not existed, for `notify.link_down_after` without a break (a reconnecting cable or a
//! renaming udev stays quiet), and reported back once when that ends. Time comes in as
//! `now`; [`NicWatch::deadline`] tells the daemon when to look again without an event.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_notify::Event;

use crate::model::{Desired, Observed};

/// The state of one NIC as last observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Present with carrier.
    Fine,
    /// Present without carrier (`IFF_LOWER_UP` clear).
    Down,
    /// Absent.
    Missing,
}

#[derive(Debug, Clone)]
struct Nic {
    bridge: String,
    condition: Condition,
    /// When `condition` began.
    since: Instant,
    /// What was reported and not yet reported back.
    reported: Option<Condition>,
}

/// Tracks the bridge ports of the configuration.
#[derive(Debug, Clone)]
pub struct NicWatch {
    grace: Duration,
    nics: BTreeMap<String, Nic>,
}

impl NicWatch {
    /// Reports a NIC after `grace` of being down or missing.
    pub fn new(grace: Duration) -> NicWatch {
        NicWatch {
            grace,
            nics: BTreeMap::new(),
        }
    }

    /// Changes the grace (after a reload).
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Takes one observation of the kernel's links and returns what to report. NICs no
    /// longer in the configuration are forgotten without a word.
    pub fn observe(&mut self, now: Instant, desired: &Desired, observed: &Observed) -> Vec<Event> {
        let mut seen = BTreeMap::new();
        for b in &desired.bridges {
            for p in &b.ports {
                let condition = match observed.links.get(&p.name) {
                    None => Condition::Missing,
                    Some(l) if !l.lower_up => Condition::Down,
                    Some(_) => Condition::Fine,
                };
                let nic = match self.nics.remove(&p.name) {
                    Some(mut n) => {
                        if n.condition != condition {
                            n.condition = condition;
                            n.since = now;
                        }
                        n.bridge.clone_from(&b.name);
                        n
                    }
                    None => Nic {
                        bridge: b.name.clone(),
                        condition,
                        since: now,
                        reported: None,
                    },
                };
                seen.insert(p.name.clone(), nic);
            }
        }
        self.nics = seen;
        self.tick(now)
    }

    /// Re-evaluates the last observation at `now` (a grace period may have ended).
    pub fn tick(&mut self, now: Instant) -> Vec<Event> {
        let mut out = Vec::new();
        for (name, nic) in &mut self.nics {
            let (interface, bridge) = (name.clone(), Some(nic.bridge.clone()));
            match (nic.reported, nic.condition) {
                (Some(Condition::Missing), c) if c != Condition::Missing => {
                    out.push(Event::LinkNicPresent {
                        interface: interface.clone(),
                        bridge: bridge.clone(),
                    });
                    nic.reported = None;
                }
                (Some(Condition::Down), Condition::Fine) => {
                    out.push(Event::LinkUp {
                        interface: interface.clone(),
                        bridge: bridge.clone(),
                    });
                    nic.reported = None;
                }
                // Down, then gone: the absence is reported on its own.
                (Some(Condition::Down), Condition::Missing) => nic.reported = None,
                _ => {}
            }
            let due = now.saturating_duration_since(nic.since) >= self.grace;
            if nic.condition != Condition::Fine && nic.reported != Some(nic.condition) && due {
                out.push(match nic.condition {
                    Condition::Missing => Event::LinkNicMissing { interface, bridge },
                    _ => Event::LinkDown { interface, bridge },
                });
                nic.reported = Some(nic.condition);
            }
        }
        out
    }

    /// When a NIC that is down or missing will have been so for the grace period, if one is
    /// waiting to be reported.
    pub fn deadline(&self) -> Option<Instant> {
        self.nics
            .values()
            .filter(|n| n.condition != Condition::Fine && n.reported != Some(n.condition))
            .map(|n| n.since + self.grace)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BridgeSpec, Link, PortSpec};
    use std::collections::BTreeSet;

    fn desired() -> Desired {
        let port = |name: &str| PortSpec {
            name: name.into(),
            mtu: None,
            hairpin: None,
            learning: None,
            cost: None,
            priority: None,
        };
        let bridge = |name: &str, ports: Vec<PortSpec>| BridgeSpec {
            name: name.into(),
            ports,
            addresses: Vec::new(),
            mtu: None,
            stp: false,
            forward_delay_cs: 0,
            multicast_snooping: true,
            vlan_filtering: false,
        };
        Desired {
            bridges: vec![
                bridge("br-api", vec![port("enp3s0f0")]),
                bridge("br0", Vec::new()),
            ],
            routes: Vec::new(),
            sysctls: Vec::new(),
            protected: BTreeSet::new(),
            move_check_timeout: Duration::from_secs(5),
            virtual_addresses: Vec::new(),
        }
    }

    /// The kernel's links: `enp3s0f0` with carrier `Some(true)`, without `Some(false)`, or
    /// absent; the bridges always there (a bridge without ports has no carrier).
    fn observed(nic: Option<bool>) -> Observed {
        let link = |name: &str, lower_up: bool| Link {
            name: name.into(),
            index: 1,
            kind: None,
            controller: None,
            mtu: 1500,
            up: true,
            lower_up,
            bridge: None,
            port: None,
        };
        let mut o = Observed::default();
        o.links.insert("br-api".into(), link("br-api", true));
        o.links.insert("br0".into(), link("br0", false));
        if let Some(up) = nic {
            o.links.insert("enp3s0f0".into(), link("enp3s0f0", up));
        }
        o
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::kind).collect()
    }

    const GRACE: Duration = Duration::from_secs(10);

    #[test]
    fn a_nic_down_for_the_grace_is_reported_once_and_back_once() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let (d, mut w) = (desired(), NicWatch::new(GRACE));
        assert!(w.observe(s(0), &d, &observed(Some(true))).is_empty());
        assert!(w.observe(s(1), &d, &observed(Some(false))).is_empty());
        assert_eq!(w.deadline(), Some(s(11)));
        assert!(w.tick(s(10)).is_empty(), "not yet");
        let e = w.tick(s(11));
        assert_eq!(
            e,
            [Event::LinkDown {
                interface: "enp3s0f0".into(),
                bridge: Some("br-api".into())
            }]
        );
        assert_eq!(w.deadline(), None);
        assert!(w.observe(s(30), &d, &observed(Some(false))).is_empty());
        assert!(w.tick(s(60)).is_empty(), "reported once");
        let e = w.observe(s(61), &d, &observed(Some(true)));
        assert_eq!(kinds(&e), ["link.up"]);
        assert!(w.observe(s(62), &d, &observed(Some(true))).is_empty());
    }

    #[test]
    fn a_short_flap_and_a_bridge_without_ports_stay_quiet() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let (d, mut w) = (desired(), NicWatch::new(GRACE));
        assert!(w.observe(s(0), &d, &observed(Some(false))).is_empty());
        assert!(w.observe(s(3), &d, &observed(Some(true))).is_empty());
        assert_eq!(w.deadline(), None);
        assert!(w.tick(s(100)).is_empty());
        // A new down restarts the grace.
        assert!(w.observe(s(101), &d, &observed(Some(false))).is_empty());
        assert_eq!(w.deadline(), Some(s(111)));
    }

    #[test]
    fn a_missing_nic_is_reported_then_present_then_its_carrier() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let (d, mut w) = (desired(), NicWatch::new(GRACE));
        assert!(w.observe(s(0), &d, &observed(None)).is_empty());
        assert_eq!(kinds(&w.tick(s(10))), ["link.nic_missing"]);
        // It appears without carrier: present now, down once the grace has passed.
        assert_eq!(
            kinds(&w.observe(s(20), &d, &observed(Some(false)))),
            ["link.nic_present"]
        );
        assert_eq!(kinds(&w.tick(s(30))), ["link.down"]);
        // Unplugged while down: reported missing (no "up" in between).
        assert!(w.observe(s(31), &d, &observed(None)).is_empty());
        assert_eq!(kinds(&w.tick(s(41))), ["link.nic_missing"]);
        assert_eq!(
            kinds(&w.observe(s(50), &d, &observed(Some(true)))),
            ["link.nic_present"]
        );
    }

    #[test]
    fn with_no_grace_the_first_observation_reports() {
        let (d, mut w) = (desired(), NicWatch::new(Duration::ZERO));
        let e = w.observe(Instant::now(), &d, &observed(None));
        assert_eq!(
            e,
            [Event::LinkNicMissing {
                interface: "enp3s0f0".into(),
                bridge: Some("br-api".into())
            }]
        );
    }

    #[test]
    fn a_nic_removed_from_the_configuration_is_forgotten() {
        let t0 = Instant::now();
        let (mut d, mut w) = (desired(), NicWatch::new(GRACE));
        w.observe(t0, &d, &observed(None));
        d.bridges[0].ports.clear();
        assert!(w.observe(t0 + GRACE, &d, &observed(None)).is_empty());
        assert_eq!(w.deadline(), None);
    }
}
