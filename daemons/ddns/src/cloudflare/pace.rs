//! Pacing: the local request budget, and one rate-limit pause set by a 429's
//! `Retry-After` or a nearly spent `Ratelimit` window (never longer than [`MAX_RATE_WAIT`]),
//! shared by reloaded clients and persisted through the [`super::PauseHook`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::{ApiError, Client, MAX_RATE_WAIT, PauseHook, lock};

/// The local budget and the rate-limit pause. Never locked across an `.await`.
#[derive(Debug, Default)]
pub(super) struct Pace {
    sent: VecDeque<Instant>,
    /// When requests may resume, monotonic and wall-clock.
    pause_until: Option<(Instant, SystemTime)>,
}

/// The pause `wait` from now, clamped to [`MAX_RATE_WAIT`]: a header's number (up to
/// `u64::MAX` seconds) never overflows an `Instant` or a `SystemTime`.
fn pause_from_now(wait: Duration) -> (Instant, SystemTime) {
    pause_after(Instant::now(), SystemTime::now(), wait)
}

fn pause_after(now: Instant, wall: SystemTime, wait: Duration) -> (Instant, SystemTime) {
    let wait = wait.min(MAX_RATE_WAIT);
    (
        now.checked_add(wait).unwrap_or(now),
        wall.checked_add(wait).unwrap_or(wall),
    )
}

/// Parses a `Ratelimit: "default";r=50;t=30` header into (remaining, reset seconds).
pub fn parse_ratelimit(v: &str) -> Option<(u64, u64)> {
    let (mut r, mut t) = (None, None);
    for part in v.split([';', ',']) {
        let part = part.trim();
        if let Some(x) = part.strip_prefix("r=") {
            r = x.trim().parse().ok();
        } else if let Some(x) = part.strip_prefix("t=") {
            t = x.trim().parse().ok();
        }
    }
    Some((r?, t.unwrap_or(0)))
}

/// The pause a `Ratelimit` header asks for: none while more than 2 requests are left in the
/// window, else until it resets — at least 1 s, at most [`MAX_RATE_WAIT`] whatever `t=` says.
pub fn ratelimit_pause(remaining: u64, reset: u64) -> Option<Duration> {
    (remaining <= 2).then(|| Duration::from_secs(reset.clamp(1, MAX_RATE_WAIT.as_secs())))
}

pub(super) fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    v.parse::<u64>().ok().map(Duration::from_secs)
}

impl Client {
    /// Calls `hook` whenever a rate-limit pause is set or lengthened.
    pub fn set_pause_hook(&mut self, hook: PauseHook) {
        self.pause_hook = Some(hook);
    }

    /// Shares the budget and the pause of `other` (a reload must not forget either).
    pub fn share_pace(&mut self, other: &Client) {
        self.pace = other.pace.clone();
    }

    /// Pauses requests until `until` (wall clock, e.g. read back from the state file),
    /// never longer than [`MAX_RATE_WAIT`] from now; a time in the past does nothing.
    pub fn resume_pause(&self, until: SystemTime) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        if let Ok(wait) = until.duration_since(wall)
            && !wait.is_zero()
        {
            // Unclamped, the wall-clock end is `until` itself (status shows the same second).
            let p = pause_after(now, wall, wait);
            let mut pace = lock(&self.pace);
            if pace.pause_until.is_none_or(|(i, _)| i < p.0) {
                pace.pause_until = Some(p);
            }
        }
    }

    /// The wall-clock end of the current rate-limit pause, if one is in force.
    pub fn paused_until(&self) -> Option<SystemTime> {
        lock(&self.pace)
            .pause_until
            .filter(|(i, _)| *i > Instant::now())
            .map(|(_, w)| w)
    }

    /// Pauses every request for `wait` (clamped to [`MAX_RATE_WAIT`]) unless a longer
    /// pause is already in force; a new or longer pause goes to the hook.
    pub(super) fn pause_for(&self, wait: Duration) {
        let p = pause_from_now(wait);
        let lengthened = {
            let mut pace = lock(&self.pace);
            if pace.pause_until.is_none_or(|(i, _)| i < p.0) {
                pace.pause_until = Some(p);
                true
            } else {
                false
            }
        };
        if lengthened && let Some(hook) = &self.pause_hook {
            hook(p.1);
        }
    }

    /// Waits for a rate-limit pause and takes one slot of the local budget.
    pub(super) async fn take_slot(&self) -> Result<(), ApiError> {
        loop {
            let wait = {
                let mut pace = lock(&self.pace);
                let now = Instant::now();
                match pace.pause_until {
                    Some((until, _)) if until > now => Some(until - now),
                    Some(_) => {
                        pace.pause_until = None;
                        None
                    }
                    None => None,
                }
            };
            let Some(wait) = wait else {
                break;
            };
            // The lock is not held while waiting: `status` can read the pause meanwhile.
            let wait = wait.min(MAX_RATE_WAIT);
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "waiting for Cloudflare's rate limit window"
            );
            tokio::time::sleep(wait).await;
        }
        let mut pace = lock(&self.pace);
        let now = Instant::now();
        while pace
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.opts.budget_window)
        {
            pace.sent.pop_front();
        }
        if pace.sent.len() >= self.opts.budget {
            return Err(ApiError::BudgetExhausted {
                limit: self.opts.budget,
                window: self.opts.budget_window,
            });
        }
        pace.sent.push_back(now);
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn note_headers(&self, h: &HeaderMap) {
        let Some((remaining, reset)) = h
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_ratelimit)
        else {
            return;
        };
        self.metrics
            .ratelimit_remaining
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        // Slow down before Cloudflare blocks the token for five minutes: when the window is
        // nearly spent, wait for it to reset (at most MAX_RATE_WAIT, whatever `t=` says).
        if let Some(wait) = ratelimit_pause(remaining, reset) {
            self.pause_for(wait);
        }
    }
}
