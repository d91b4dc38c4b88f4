//! I/O: the daemon's status detail (`edgectl wg show`) and metrics sample, from the
//! engine's counters and what only the daemon knows (expiries, endpoint-name lookups).

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::Extra;
use crate::config;
use crate::device::Device;
use edge_util::unix_now_i64;

/// The status detail `edgectl wg show` renders.
pub fn ipc_status(dev: &Device) -> edge_ipc::wg::Status {
    status_with(dev, None)
}

/// The status with what only the daemon knows: expiries (expired peers are listed too,
/// though the engine no longer has them) and the endpoint names' lookups.
pub(super) fn status_with(dev: &Device, extra: Option<&Extra>) -> edge_ipc::wg::Status {
    let mut s = engine_status(dev);
    let Some(x) = extra else { return s };
    let Some(wg) = &x.wg else { return s };
    let now = unix_now_i64();
    for p in &wg.peers {
        let key = p.public_key.to_base64();
        let i = match s.peers.iter().position(|st| st.public_key == key) {
            Some(i) => i,
            None => {
                s.peers.push(edge_ipc::wg::PeerStatus {
                    name: Some(p.name.clone()),
                    public_key: key,
                    preshared_key: p.preshared_key.is_some(),
                    allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                    ..Default::default()
                });
                s.peers.len() - 1
            }
        };
        let st = &mut s.peers[i];
        st.expires = p.expires.map(|e| e.unix().max(0) as u64);
        st.expired = config::is_expired(p, now);
        if let Some(ep) = &p.endpoint
            && ep.host.parse::<std::net::IpAddr>().is_err()
        {
            st.endpoint_host = Some(ep.to_string());
            if let Some((a, at)) = x.resolved.get(&p.name) {
                st.resolved_endpoint = Some(a.to_string());
                st.resolved_at = *at;
            }
        }
    }
    s
}

fn engine_status(dev: &Device) -> edge_ipc::wg::Status {
    let st = dev.status();
    let m = dev.metrics();
    let by_key: BTreeMap<&str, &crate::stats::PeerMetrics> =
        m.peers.iter().map(|p| (p.public_key.as_str(), p)).collect();
    edge_ipc::wg::Status {
        interface: st.interface.clone(),
        public_key: st.public_key.clone(),
        listen_port: st.listen_port,
        fwmark: st.fwmark,
        peers: st
            .peers
            .iter()
            .map(|p| {
                let pm = by_key.get(p.public_key.as_str());
                edge_ipc::wg::PeerStatus {
                    name: p.name.clone(),
                    public_key: p.public_key.clone(),
                    preshared_key: p.preshared_key.is_some(),
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                    latest_handshake: p.last_handshake.0,
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                    persistent_keepalive: p.persistent_keepalive,
                    handshake_attempts: pm.map_or(0, |m| m.counts.handshake_attempts),
                    endpoint_changes: pm.map_or(0, |m| m.counts.endpoint_changes),
                    ..Default::default()
                }
            })
            .collect(),
        cookie_replies: m.cookie_replies,
        listen_address: dev.listen_address().map(|a| a.to_string()),
        standby: dev.standby(),
        reached_out: dev.reached_out(),
    }
}

pub(super) fn sample(dev: &Device, extra: &Mutex<Extra>) -> edge_metrics::wg::Sample {
    let m = dev.metrics();
    let x = extra.lock();
    let now = unix_now_i64();
    let expiries =
        x.wg.iter()
            .flat_map(|wg| wg.peers.iter())
            .filter_map(|p| {
                p.expires.map(|e| edge_metrics::wg::PeerExpiry {
                    peer: p.name.clone(),
                    expires_seconds: e.unix(),
                    expired: config::is_expired(p, now),
                })
            })
            .collect();
    let lookups = x.lookups.iter().map(|(k, v)| (k.clone(), *v)).collect();
    drop(x);
    edge_metrics::wg::Sample {
        peers: m
            .peers
            .into_iter()
            .map(|p| edge_metrics::wg::PeerSample {
                peer: p.name.unwrap_or(p.public_key),
                counts: p.counts,
            })
            .collect(),
        cookie_replies: m.cookie_replies,
        drops: m.drops,
        expiries,
        endpoint_lookups: lookups,
    }
}
