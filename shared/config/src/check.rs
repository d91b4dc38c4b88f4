//! Pure: checks across sections — references between the daemons' sections.

use ipnet::IpNet;

use crate::Config;
use crate::decode::Ctx;

/// Runs every cross-section check, recording errors and warnings.
pub(crate) fn cross_check(ctx: &mut Ctx<'_>, cfg: &Config) {
    wg_port_open(ctx, cfg);
    wg_in_vpn_zone(ctx, cfg);
    protected_not_wg(ctx, cfg);
    forward_targets_reachable(ctx, cfg);
    names_do_not_collide(ctx, cfg);
    heartbeats_need_ddns(ctx, cfg);
    origin_lock_and_proxied_records(ctx, cfg);
    crate::ha::cross_check(ctx, cfg);
}

/// An origin lock admits only the proxy: every record a locked forward serves must be
/// proxied, or its visitors (who come straight from browsers) are dropped. The other way
/// round, a web forward of a host with proxied records and no lock leaves the origin
/// reachable around the proxy's WAF and DDoS protection.
fn origin_lock_and_proxied_records(ctx: &mut Ctx<'_>, cfg: &Config) {
    let (Some(fw), Some(ddns)) = (&cfg.fw, &cfg.ddns) else {
        return;
    };
    let family_records = |v4: bool| {
        ddns.records
            .iter()
            .filter(move |r| (r.kind == crate::ddns::RecordType::A) == v4)
    };
    for f in &fw.forwards {
        let v4 = f.to.is_ipv4();
        let path = format!("fw.forward.{}", f.name);
        if f.origin_lock.is_some() {
            if let Some(r) = family_records(v4).find(|r| !r.proxied) {
                ctx.error(
                    f.origin_lock_span.clone(),
                    &format!("{path}.origin_lock"),
                    format!(
                        "forward `{}` admits only Cloudflare, but record `{}` (line {}) is not proxied: its visitors come straight to this host and would be dropped",
                        f.name, r.name, r.location.line
                    ),
                )
                .hint("proxy the record (`proxied = true` in its [[ddns.record]]), or remove origin_lock from the forward");
            }
            continue;
        }
        let web = f.proto.has_tcp()
            && [80u16, 443]
                .iter()
                .any(|p| (f.port.start.get()..=f.port.end.get()).contains(p));
        if let Some(r) = family_records(v4).find(|r| r.proxied)
            && web
        {
            ctx.warn(
                f.port_span.clone(),
                &format!("{path}.port"),
                format!(
                    "forward `{}` lets anyone reach the origin of proxied record `{}` directly, around Cloudflare's WAF and DDoS protection",
                    f.name, r.name
                ),
            )
            .hint("add `origin_lock = \"cloudflare\"` to the forward (its `from` list stays open for the admin or a monitor)");
        }
    }
}

/// Heartbeats are pinged by edge-ddns after each sync: without `[ddns]` nothing pings them.
fn heartbeats_need_ddns(ctx: &mut Ctx<'_>, cfg: &Config) {
    let Some(n) = &cfg.notify else {
        return;
    };
    if cfg.ddns.is_some() {
        return;
    }
    for h in &n.heartbeats {
        ctx.warn(
            h.span.clone(),
            &format!("notify.heartbeat.{}", h.name),
            format!(
                "heartbeat `{}` is pinged by edge-ddns after each sync, but there is no [ddns] section: it will never be pinged",
                h.name
            ),
        )
        .hint("add the [ddns] section, or remove the heartbeat (the monitoring service would report this host down)");
    }
}

/// The WireGuard listen port must be admitted by the firewall's input policy.
fn wg_port_open(ctx: &mut Ctx<'_>, cfg: &Config) {
    let (Some(wg), Some(fw)) = (&cfg.wg, &cfg.fw) else {
        return;
    };
    let port = wg.listen_port.get();
    if fw.input_admits_from_anywhere(true, port) {
        return;
    }
    ctx.error(
        wg.listen_port_span.clone(),
        "wg.listen_port",
        format!(
            "WireGuard listen port {port}/udp is blocked by the firewall: [fw.input] has policy \"drop\" and no rule admits udp {port} from anywhere"
        ),
    )
    .hint(format!(
        "add to the [fw] section:\n[[fw.input.allow]]\nname = \"wireguard\"\nproto = \"udp\"\nport = {port}"
    ));
}

/// The WireGuard interface should be in the firewall's vpn zone.
fn wg_in_vpn_zone(ctx: &mut Ctx<'_>, cfg: &Config) {
    let (Some(wg), Some(fw)) = (&cfg.wg, &cfg.fw) else {
        return;
    };
    if !fw.vpn.contains(&wg.interface) {
        ctx.warn(
            wg.interface_span.clone(),
            "wg.interface",
            format!(
                "WireGuard interface `{}` is not in `fw.vpn`, so the firewall treats its traffic as foreign",
                wg.interface
            ),
        )
        .hint(format!("add it: vpn = [\"{}\"] in [fw]", wg.interface));
    }
}

/// The WireGuard interface may not be a protected interface.
fn protected_not_wg(ctx: &mut Ctx<'_>, cfg: &Config) {
    let (Some(link), Some(wg)) = (&cfg.link, &cfg.wg) else {
        return;
    };
    if link.is_protected(wg.interface.as_str()) {
        ctx.error(
            wg.interface_span.clone(),
            "wg.interface",
            format!(
                "WireGuard interface `{}` is a protected interface",
                wg.interface
            ),
        )
        .hint("protected interfaces are never touched by edge: pick another name");
    }
}

/// Networks the host can reach by its own configuration: managed bridge subnets, declared
/// routes and WireGuard allowed IPs.
fn reachable_networks(cfg: &Config) -> Vec<IpNet> {
    let mut nets = Vec::new();
    if let Some(link) = &cfg.link {
        nets.extend(
            link.bridges
                .iter()
                .flat_map(|b| b.addresses.iter().map(IpNet::trunc)),
        );
        nets.extend(link.routes.iter().map(|r| r.to));
    }
    if let Some(wg) = &cfg.wg {
        nets.extend(wg.addresses.iter().map(IpNet::trunc));
        nets.extend(wg.peers.iter().flat_map(|p| p.allowed_ips.iter().copied()));
    }
    nets
}

/// A forward's target should be inside a network the suite manages; otherwise something else
/// (libvirt) must provide the route, so this is a warning.
fn forward_targets_reachable(ctx: &mut Ctx<'_>, cfg: &Config) {
    let Some(fw) = &cfg.fw else {
        return;
    };
    let nets = reachable_networks(cfg);
    for f in &fw.forwards {
        // A default route reaches everything, but a forward target behind it would loop back
        // out of the WAN: only count more specific networks.
        if nets.iter().any(|n| n.prefix_len() > 0 && n.contains(&f.to)) {
            continue;
        }
        ctx.warn(
            f.to_span.clone(),
            &format!("fw.forward.{}.to", f.name),
            format!(
                "forward `{}` targets {}, which no managed bridge subnet or declared route reaches",
                f.name, f.to
            ),
        )
        .hint("fine if libvirt (or another manager) owns that network; otherwise add the bridge address or a [[link.route]]");
    }
}

/// The WireGuard interface cannot share a name with a managed bridge.
fn names_do_not_collide(ctx: &mut Ctx<'_>, cfg: &Config) {
    let (Some(wg), Some(link)) = (&cfg.wg, &cfg.link) else {
        return;
    };
    if link.bridges.iter().any(|b| b.name == wg.interface)
        || link.bridge_of_port(wg.interface.as_str()).is_some()
    {
        ctx.error(
            wg.interface_span.clone(),
            "wg.interface",
            format!(
                "WireGuard interface `{}` is also a managed bridge or bridge port",
                wg.interface
            ),
        );
    }
}
