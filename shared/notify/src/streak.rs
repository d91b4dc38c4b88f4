//! Pure: "failing after N consecutive runs" and "recovered" from a sequence of run results,
//! so that a flapping source of errors sends one event when it starts failing and one when it
//! recovers, never one per run.

use serde::{Deserialize, Serialize};

/// Consecutive failed runs and whether they were reported; persist it to keep the count
/// across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Failed runs in a row (0 after a success).
    #[serde(default)]
    pub failed_runs: u32,
    /// True once the streak reached the threshold and was reported as failing.
    #[serde(default)]
    pub reported: bool,
}

/// What a run result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreakChange {
    /// The streak just reached the threshold: report it failing.
    Failing {
        /// Failed runs in a row.
        failed_runs: u32,
    },
    /// A success ended a reported streak: report the recovery.
    Recovered {
        /// How many runs had failed in a row.
        failed_runs: u32,
    },
}

impl Streak {
    /// Records one run; `threshold` is how many failures in a row are reported (at least 1).
    pub fn record(&mut self, ok: bool, threshold: u32) -> Option<StreakChange> {
        if ok {
            let before = *self;
            *self = Streak::default();
            return before.reported.then_some(StreakChange::Recovered {
                failed_runs: before.failed_runs,
            });
        }
        self.failed_runs = self.failed_runs.saturating_add(1);
        if !self.reported && self.failed_runs >= threshold.max(1) {
            self.reported = true;
            return Some(StreakChange::Failing {
                failed_runs: self.failed_runs,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(results: &[bool], threshold: u32) -> Vec<Option<StreakChange>> {
        let mut s = Streak::default();
        results.iter().map(|ok| s.record(*ok, threshold)).collect()
    }

    #[test]
    fn one_event_when_failing_starts_and_one_when_it_ends() {
        use StreakChange::*;
        assert_eq!(
            run(&[false, false, false, false, true, true], 3),
            [
                None,
                None,
                Some(Failing { failed_runs: 3 }),
                None,
                Some(Recovered { failed_runs: 4 }),
                None
            ]
        );
    }

    #[test]
    fn short_streaks_below_the_threshold_stay_quiet() {
        assert!(
            run(&[false, false, true, false, true], 3)
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn threshold_one_reports_the_first_failure() {
        assert_eq!(
            run(&[false], 1),
            [Some(StreakChange::Failing { failed_runs: 1 })]
        );
        assert_eq!(
            run(&[false], 0),
            [Some(StreakChange::Failing { failed_runs: 1 })]
        );
    }

    #[test]
    fn a_persisted_streak_continues_after_a_restart() {
        let mut s: Streak = serde_json::from_str(r#"{"failed_runs":2,"reported":false}"#).unwrap();
        assert_eq!(
            s.record(false, 3),
            Some(StreakChange::Failing { failed_runs: 3 })
        );
        let mut s: Streak = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Streak::default());
        assert_eq!(s.record(true, 3), None);
    }
}
