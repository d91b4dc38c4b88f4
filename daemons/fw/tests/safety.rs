//! The anti-lockout proof refuses rulesets that would cut SSH or WireGuard, naming the rule.

mod common;

use edge_fw::safety;

fn with(text_edit: impl Fn(String) -> String) -> (edge_fw::model::Model, edge_fw::ir::Ruleset) {
    let cfg = common::reference();
    let text = std::fs::read_to_string(&cfg.path).expect("read");
    let cfg = common::parse(&cfg.path, &text_edit(text));
    common::build(&cfg, Default::default())
}

#[test]
fn the_reference_ruleset_passes() {
    let (m, rs) = common::build(&common::reference(), Default::default());
    assert_eq!(safety::check(&m, &rs), Ok(()));
}

#[test]
fn removing_the_ssh_rule_is_refused_naming_the_input_policy() {
    let (m, rs) = with(|t| {
        t.replace(
            "# SSH only from the admin LAN and the WireGuard network.\n[[fw.input.allow]]\n# Rule name.\nname = \"ssh\"\n# Protocol.\nproto = \"tcp\"\n# Destination port.\nport = 22\n# Allowed sources: names from [fw.networks] or CIDRs.\nfrom = [\"admin\", \"wireguard\"]\n",
            "",
        )
    });
    let errs = safety::check(&m, &rs).expect_err("must refuse");
    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        text.iter()
            .any(|e| e.contains("SSH tcp/22 from 192.168.1.1")
                && e.contains("drop policy of chain `input`")),
        "{text:?}"
    );
    assert!(text.iter().any(|e| e.contains("10.17.9.1")), "{text:?}");
}

#[test]
fn a_forward_capturing_the_wireguard_port_is_refused_naming_it() {
    let (m, rs) = with(|t| {
        format!(
            "{t}\n[[fw.forward]]\n# Steals WireGuard.\nname = \"steal\"\n# Protocol.\nproto = \"udp\"\n# Port.\nport = 51820\n# Address.\naddress = \"192.198.0.30\"\n# Target.\nto = \"10.17.5.30\"\n"
        )
    });
    let addrs = [(
        "br-api".to_owned(),
        vec!["192.198.0.30".parse().expect("ip")],
    )]
    .into_iter()
    .collect();
    let m = edge_fw::model::Model::new(
        &m.fw,
        edge_fw::model::Env {
            addresses: addrs,
            ..m.env.clone()
        },
    )
    .expect("model");
    let errs = safety::check(&m, &rs).expect_err("must refuse");
    let e = errs[0].to_string();
    assert!(
        e.contains("WireGuard udp/51820")
            && e.contains("forwarded away")
            && e.contains("fwd/dispatch4"),
        "{e}"
    );
}

#[test]
fn an_ipv6_forward_capturing_the_wireguard_port_is_refused_naming_it() {
    let text = common::dual_stack_text();
    let text = format!(
        "{text}\n[[fw.forward]]\nname = \"steal6\"\nproto = \"udp\"\nport = 51820\naddress = \"2001:db8:c6::30\"\nto = \"fd17:5::30\"\n"
    );
    let (m, rs) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    let errs = safety::check(&m, &rs).expect_err("must refuse");
    assert_eq!(errs.len(), 1, "only the IPv6 path is captured: {errs:?}");
    let e = errs[0].to_string();
    assert!(
        e.contains("WireGuard udp/51820 from 2001:db8:ffff::7 on br-api")
            && e.contains("forwarded away")
            && e.contains("fwd/dispatch6"),
        "{e}"
    );
    // The dual-stack reference itself passes, IPv6 WireGuard and SSH included.
    let (m, rs) = common::build(&common::dual_stack(), Default::default());
    assert_eq!(safety::check(&m, &rs), Ok(()));
}
