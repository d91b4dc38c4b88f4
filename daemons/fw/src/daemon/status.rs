//! What the daemon tells a person: `edgectl status`'s fw part and `edgectl fw plan`.

use edge_ipc::Response;

use super::State;
use crate::ir::Ruleset;
use crate::model::Model;
use crate::nfnl::Socket;
use crate::{observe, origin, plan};

impl State {
    /// The role-specific part of `edgectl status`.
    pub(super) fn status(&self) -> edge_ipc::fw::Status {
        let forward_list = self
            .model
            .fw
            .forwards
            .iter()
            .map(|f| {
                let (packets, bytes) = self
                    .last_counters
                    .get(&crate::compile::counter_name(&f.name))
                    .copied()
                    .unwrap_or((0, 0));
                let lock_drops = self
                    .last_counters
                    .get(&crate::compile::lock_counter(&f.name))
                    .map_or(0, |c| c.0);
                edge_ipc::fw::ForwardStatus {
                    name: f.name.clone(),
                    rule: describe_forward(f),
                    packets,
                    bytes,
                    locked: f.origin_lock.is_some(),
                    lock_drops,
                }
            })
            .collect();
        let r = &self.ranges;
        let origin_lock = self.locked().then(|| edge_ipc::fw::OriginLockStatus {
            v4: r.current.v4.len(),
            v6: r.current.v6.len(),
            origin: match r.current.origin {
                origin::Origin::Shipped => "shipped".to_owned(),
                origin::Origin::Fetched => "fetched".to_owned(),
            },
            fetched_at: r.current.fetched_at,
            checked_at: r.checked_at,
            pending: r.pending.is_some(),
            last_error: r.last_error.clone(),
        });
        edge_ipc::fw::Status {
            forwards: self.model.fw.forwards.len(),
            rules: self.rs.edge.rule_count(),
            pending_confirm: self.pending_confirm.is_some(),
            forward_list,
            counters_at: self.counters_at,
            drift_repairs: self.metrics.drift_repairs.get(),
            origin_lock,
        }
    }
}

/// `tcp 192.198.0.30:443 -> 10.17.5.30:443 from wireguard`.
fn describe_forward(f: &edge_config::fw::Forward) -> String {
    let proto = match f.proto {
        edge_config::fw::Proto::Tcp => "tcp",
        edge_config::fw::Proto::Udp => "udp",
        edge_config::fw::Proto::Both => "tcp+udp",
    };
    let at = f.address.map(|a| match a {
        std::net::IpAddr::V4(a) => format!("{a}:"),
        std::net::IpAddr::V6(a) => format!("[{a}]:"),
    });
    let to = match f.to {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let on = if f.on.is_empty() {
        String::new()
    } else {
        format!(
            " on {}",
            f.on.iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let from = f
        .from
        .as_ref()
        .map(|l| {
            let labels: Vec<&str> = l.iter().map(|s| s.label.as_str()).collect();
            format!(" from {}", labels.join(", "))
        })
        .unwrap_or_default();
    format!(
        "{proto} {}{}{on} -> {to}:{}{from}",
        at.unwrap_or_default(),
        f.port,
        f.to_port
    )
}

/// `edgectl fw plan` through the daemon: the same plan as an apply would make.
pub(super) fn plan_response(sock: &Socket, m: &Model, rs: &Ruleset) -> Response {
    let live = observe::read_live(sock);
    let p = plan::plan(m, rs, live.as_ref().ok());
    let mut message = format!("{}{}", rs.edge, rs.state);
    match &live {
        Err(e) => message.push_str(&format!(
            "\n# cannot read the live tables: {}",
            edge_util::error_chain(e)
        )),
        Ok(_) => {
            message.push_str(&format!("\n# {}", p.update.describe()));
            let diff = p.diff_lines();
            if !diff.is_empty() {
                message.push_str("\n# differences from the live tables (- live, + compiled):\n");
                message.push_str(&diff.join("\n"));
            }
        }
    }
    for l in &p.lockouts {
        message.push_str(&format!("\n# REFUSED: {l}"));
    }
    Response::Done {
        message,
        detail: serde_json::json!({
            "changes": p.diff_lines().len(),
            "lockouts": p.lockouts.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        }),
    }
}
