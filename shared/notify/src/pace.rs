//! Pure: how fast one target may be sent to — at most `max_per_minute` requests in any
//! window — and how long to wait before the next attempt after a transient failure. Time
//! comes in as `now`; the I/O layer sleeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sliding-window limit: at most `limit` requests in any `window`.
#[derive(Debug, Clone)]
pub struct Window {
    limit: usize,
    window: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    /// At most `limit` (at least 1) requests per `window`.
    pub fn new(limit: u32, window: Duration) -> Window {
        Window {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            window,
            sent: VecDeque::new(),
        }
    }

    /// Admits a request at `now` (and counts it), or says how long to wait first.
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        while let Some(first) = self.sent.front() {
            if now.saturating_duration_since(*first) >= self.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
        if self.sent.len() < self.limit {
            self.sent.push_back(now);
            return Ok(());
        }
        let oldest = self.sent.front().copied().unwrap_or(now);
        Err((oldest + self.window).saturating_duration_since(now))
    }
}

/// The wait before retry number `retry` (1 for the first retry): `base` doubled per retry,
/// at most `cap`, scaled by `jitter` in `[0, 1]` to between half and all of it (so that
/// several daemons retrying the same target spread out).
pub fn backoff(retry: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base
        .saturating_mul(1u32 << retry.clamp(1, 17).saturating_sub(1))
        .min(cap);
    exp.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_admits_its_limit_then_says_when() {
        let t0 = Instant::now();
        let mut w = Window::new(2, Duration::from_secs(60));
        assert_eq!(w.admit(t0), Ok(()));
        assert_eq!(w.admit(t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            w.admit(t0 + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        // Refused requests are not counted; once the first leaves the window, one more.
        assert_eq!(w.admit(t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(
            w.admit(t0 + Duration::from_secs(61)),
            Err(Duration::from_secs(9))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let (b, c) = (Duration::from_secs(2), Duration::from_secs(60));
        assert_eq!(backoff(1, b, c, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(2, b, c, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(3, b, c, 0.0), Duration::from_secs(4));
        assert_eq!(backoff(10, b, c, 1.0), c);
        assert_eq!(backoff(u32::MAX, b, c, 1.0), c);
        assert_eq!(backoff(0, b, c, 1.0), b);
    }
}
