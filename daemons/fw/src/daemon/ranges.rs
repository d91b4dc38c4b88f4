//! The origin lock's ranges in the daemon: fetched in the background, checked, put in force
//! with an element-only update (or held, or kept on a failure), and exported.

use std::time::Duration;

use edge_ipc::Response;
use edge_ipc::proto::ErrorCode;
use edge_ipc::shell::Shell;
use edge_util::unix_now;
use tokio::sync::mpsc;

use super::{State, Watch, build_with};
use crate::origin::{self, Decision, Ranges};

/// The first retry after a failed fetch of the ranges; each failure doubles it, up to the
/// refresh interval.
pub(super) const RANGES_RETRY: Duration = Duration::from_secs(60);

/// The origin lock's ranges: in force, held, and when to look again.
pub(super) struct RangeState {
    pub(super) current: Ranges,
    pub(super) pending: Option<Ranges>,
    pub(super) checked_at: u64,
    pub(super) last_error: Option<String>,
    pub(super) cache: std::path::PathBuf,
    pub(super) fetching: bool,
    pub(super) retry: Duration,
    /// `edgectl fw origin-lock refresh` requests waiting for the fetch's outcome.
    pub(super) waiting: Vec<edge_ipc::shell::Responder>,
}

impl RangeState {
    /// The ranges `current` at start (from the cache or shipped): nothing fetched yet.
    pub(super) fn new(current: Ranges, cache: std::path::PathBuf) -> Self {
        RangeState {
            current,
            pending: None,
            checked_at: 0,
            last_error: None,
            cache,
            fetching: false,
            retry: RANGES_RETRY,
            waiting: Vec::new(),
        }
    }
}

/// The refresh interval of the origin lock's ranges in a configuration.
pub(super) fn refresh_interval(config: &edge_config::Config) -> Duration {
    config
        .fw
        .as_ref()
        .map_or(edge_config::fw::ORIGIN_LOCK_REFRESH, |f| {
            f.origin_lock.refresh
        })
}

impl State {
    /// Starts a fetch of the ranges (its outcome comes back as [`Watch::Ranges`]).
    pub(super) fn fetch_ranges(&mut self, shell: &Shell, tx: &mpsc::UnboundedSender<Watch>) {
        if self.ranges.fetching {
            return;
        }
        self.ranges.fetching = true;
        let src = match &shell.config().fw {
            Some(fw) => fw.origin_lock.clone(),
            None => return,
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = origin::fetch(&src, unix_now())
                .await
                .map_err(|e| edge_util::error_chain(&e));
            let _ = tx.send(Watch::Ranges(r));
        });
    }

    /// A fetch ended: put a valid list in force (an element-only update of the sets), hold
    /// one that changes more than half of the ranges until it comes again, keep the list
    /// in force on a failure. Returns when to fetch next.
    pub(super) async fn ranges_fetched(
        &mut self,
        shell: &mut Shell,
        res: Result<Ranges, String>,
    ) -> Duration {
        self.ranges.fetching = false;
        let refresh = refresh_interval(shell.config());
        let (answer, next) = match res {
            Err(e) => self.ranges_failed(e, refresh),
            Ok(fetched) => self.ranges_checked(shell, fetched, refresh).await,
        };
        for r in std::mem::take(&mut self.ranges.waiting) {
            r.send(match &answer {
                Ok(m) => Response::Done {
                    message: m.clone(),
                    detail: serde_json::Value::Null,
                },
                Err(e) => Response::Error {
                    code: ErrorCode::Failed,
                    message: e.clone(),
                },
            });
        }
        next
    }

    /// A fetch failed: the list in force stays; the next try backs off.
    fn ranges_failed(
        &mut self,
        e: String,
        refresh: Duration,
    ) -> (Result<String, String>, Duration) {
        self.metrics.origin_lock_fetch_failures.inc();
        tracing::warn!(error = %e, "cannot refresh the origin lock's ranges; the list in force stays");
        let next = self.ranges.retry;
        self.ranges.retry = (self.ranges.retry * 2).min(refresh);
        self.ranges.last_error = Some(e.clone());
        (Err(e), next)
    }

    /// A fetch gave a list: unchanged, held, or put in force.
    async fn ranges_checked(
        &mut self,
        shell: &mut Shell,
        fetched: Ranges,
        refresh: Duration,
    ) -> (Result<String, String>, Duration) {
        self.ranges.retry = RANGES_RETRY;
        self.ranges.checked_at = unix_now();
        self.ranges.last_error = None;
        match origin::decide(&self.ranges.current, &fetched, self.ranges.pending.as_ref()) {
            Decision::Unchanged => {
                self.ranges.pending = None;
                (Ok("the ranges are unchanged".to_owned()), refresh)
            }
            Decision::Hold => {
                let msg = format!(
                    "the fetched list ({} + {} prefixes) changes more than half of the ranges: held until the next fetch gives the same answer",
                    fetched.v4.len(),
                    fetched.v6.len()
                );
                tracing::warn!("{msg}");
                self.ranges.pending = Some(fetched);
                self.ranges.last_error = Some(msg.clone());
                (Ok(msg), refresh.min(Duration::from_secs(3600)))
            }
            Decision::Accept => (self.ranges_accept(shell, fetched).await, refresh),
        }
    }

    /// Puts a fetched list in force: kept for the next start, compiled and applied; on a
    /// failure the list in force before comes back.
    async fn ranges_accept(
        &mut self,
        shell: &mut Shell,
        fetched: Ranges,
    ) -> Result<String, String> {
        let msg = format!(
            "new ranges in force: {} IPv4 and {} IPv6 prefixes",
            fetched.v4.len(),
            fetched.v6.len()
        );
        tracing::info!("{msg}");
        if let Err(e) = origin::save_cache(&self.ranges.cache, &fetched) {
            tracing::warn!(path = %self.ranges.cache.display(), error = %e, "cannot keep the ranges for the next start");
        }
        self.ranges.pending = None;
        let old = std::mem::replace(&mut self.ranges.current, fetched);
        let cfg = shell.config().clone();
        let addrs = self.model.env.addresses.clone();
        let res = match build_with(&cfg, addrs, &self.ranges.current, self.active()) {
            Ok((m, rs)) => self
                .apply_desired(shell, m, rs, "origin lock ranges")
                .await
                .map(|_| msg),
            Err(e) => Err(format!("{e:#}")),
        };
        if res.is_err() {
            self.ranges.current = old;
        }
        self.export_ranges();
        res
    }

    pub(super) fn export_ranges(&self) {
        let r = &self.ranges.current;
        self.metrics
            .origin_lock_ranges
            .set(i64::try_from(r.v4.len() + r.v6.len()).unwrap_or(i64::MAX));
        self.metrics
            .origin_lock_fetched
            .set(i64::try_from(r.fetched_at).unwrap_or(i64::MAX));
    }
}
