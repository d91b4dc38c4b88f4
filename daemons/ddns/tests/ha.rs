//! edge-ddns under `[ha]`, against the Cloudflare API test server: as BACKUP it detects and
//! reports and never writes (the sync is not a failure and the daemon is ready); a MASTER
//! that flaps back to BACKUP within the hold-off writes nothing; a MASTER that stays writes
//! after the hold-off, and only after a fresh read of the record; an older generation
//! delivered late is ignored; the role file alone (no request) is enough.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use edge_config::Role;
use edge_ipc::ha::{HaRole, RoleState, STATE_VERSION, Standing};
use edge_ipc::{Client, Request, Response};
use edge_testkit::{in_new_netns, wait_for};
use hyper::Method;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const HA: &str = r#"
[ha]
name = "edge-a"
address = "10.0.0.31"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
ddns_hold_off = "2s"
[ha.peer]
name = "edge-b"
address = "10.0.0.32"
[[ha.vip]]
address = "10.0.0.30/32"
"#;

fn role(role: HaRole, generation: u64) -> RoleState {
    RoleState {
        version: STATE_VERSION,
        instance: "edge".into(),
        role,
        generation,
        since: 1_700_000_000,
        event: role.as_str().into(),
        priority: Some(100),
        conntrack: None,
    }
}

fn status(c: &Client) -> (edge_ipc::DaemonStatus, edge_ipc::ddns::Status) {
    let Response::Status(st) = block_on(c.request(Request::Status)).unwrap() else {
        panic!("status expected")
    };
    let d = st.detail.ddns().unwrap().clone();
    (*st, d)
}

fn set(c: &Client, s: RoleState) -> Response {
    block_on(c.request(Request::SetRole(Box::new(s)))).unwrap()
}

#[test]
// One daemon's role changes read top to bottom: each step (BACKUP, flap, MASTER, stale,
// role file) starts from the role and records the one before left; split, they share it all.
#[allow(clippy::too_many_lines)]
fn only_a_master_past_its_hold_off_writes_and_only_after_a_fresh_read() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.dir.path().join("edge.toml");
        std::fs::write(&cfg, lab.config_text("", "") + HA).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge-ddns"));
        cmd.args(["--log-format", "text", "--config"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and affects only the child.
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(1, 9);
                Ok(())
            });
        }
        let _d = Daemon(cmd.spawn().unwrap());
        let run = lab.dir.path().join("run");
        let c = Client::new(Role::Ddns, edge_config::socket_path(&run, Role::Ddns));

        // No role file: BACKUP, as keepalived starts. The startup sync detects, reads the
        // zone, finds nothing and would create: held. Ready all the same, and not failing.
        let ready = wait_for(Duration::from_secs(15), || {
            c.path().exists() && status(&c).0.ready
        });
        assert!(ready.is_some(), "edge-ddns did not become ready as BACKUP");
        let (st, d) = status(&c);
        assert_eq!(st.ha.as_ref().unwrap().standing, Standing::Backup);
        assert_eq!(d.writes_held.as_deref(), Some("this host is BACKUP"));
        assert_eq!(
            d.families[0].address.as_deref(),
            Some(IP1),
            "it still detects"
        );
        assert!(st.last_run.unwrap().ok, "a held write is not a failure");
        assert!(lab.writes().is_empty(), "{:?}", methods(&lab.log()));

        // Both hosts briefly claim master: MASTER then BACKUP within the hold-off.
        assert!(matches!(
            set(&c, role(HaRole::Master, 1)),
            Response::Done { .. }
        ));
        assert!(matches!(
            set(&c, role(HaRole::Backup, 2)),
            Response::Done { .. }
        ));
        std::thread::sleep(Duration::from_secs(3));
        assert!(
            lab.writes().is_empty(),
            "a flap wrote: {:?}",
            methods(&lab.log())
        );

        // MASTER for good: nothing during the hold-off, then a fresh read, then the write.
        lab.cf.clear_log();
        let t = std::time::Instant::now();
        assert!(matches!(
            set(&c, role(HaRole::Master, 3)),
            Response::Done { .. }
        ));
        let (st, d) = status(&c);
        assert_eq!(st.ha.unwrap().standing, Standing::Master);
        assert!(
            d.writes_held
                .as_deref()
                .unwrap_or_default()
                .contains("became MASTER"),
            "{d:?}"
        );
        std::thread::sleep(Duration::from_millis(1000));
        assert!(lab.writes().is_empty(), "wrote within the hold-off");
        let created = wait_for(Duration::from_secs(10), || lab.a_records().len() == 1);
        assert!(
            created.is_some(),
            "the master never wrote: {:?}",
            methods(&lab.log())
        );
        assert!(
            t.elapsed() >= Duration::from_secs(2),
            "before the hold-off ended"
        );
        let log = lab.log();
        let first_write = log.iter().position(|l| l.is_write()).unwrap();
        assert!(
            log[..first_write]
                .iter()
                .any(|l| l.method == Method::GET && l.path.ends_with("/dns_records")),
            "no fresh read before the write: {:?}",
            methods(&log)
        );
        assert_eq!(lab.writes().len(), 1);
        assert_eq!(lab.a_records()[0]["content"], IP1);

        // A late delivery of an older generation changes nothing.
        let Response::Done { message, .. } = set(&c, role(HaRole::Backup, 2)) else {
            panic!("stale answers Done")
        };
        assert!(message.starts_with("stale"), "{message}");
        assert_eq!(status(&c).0.ha.unwrap().standing, Standing::Master);

        // The role file alone is enough (a lost request): BACKUP again, then the address
        // changes; the sync detects it and holds the write.
        edge_ipc::follow::write_state(&run.join("ha.json"), &role(HaRole::Backup, 4)).unwrap();
        lab.set_all(Some(IP2));
        lab.cf.clear_log();
        let r = block_on(c.request(Request::Apply { confirm_secs: None })).unwrap();
        assert!(matches!(r, Response::Done { .. }), "{r:?}");
        let (st, d) = status(&c);
        assert_eq!(st.ha.unwrap().generation, 4);
        assert_eq!(d.families[0].address.as_deref(), Some(IP2));
        assert!(
            lab.writes().is_empty(),
            "a BACKUP wrote: {:?}",
            methods(&lab.log())
        );
        assert_eq!(lab.a_records()[0]["content"], IP1);
        lab.assert_schema_clean();
    });
}
