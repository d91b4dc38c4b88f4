//! Pure: the small helpers every part of edge shares, written once so that they behave
//! the same everywhere.

use std::time::{SystemTime, UNIX_EPOCH};

/// Renders an error with its causes on one line, `what: why: why`, as a log line or an
/// answer shows it. A cause whose text the line already holds is left out (libraries often
/// repeat their source's message in their own).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Seconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`unix_now`] as a signed number, for times compared with signed ones (RFC 3339 dates).
pub fn unix_now_i64() -> i64 {
    i64::try_from(unix_now()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_are_joined_and_a_repeated_one_is_left_out() {
        let e = E(
            "cannot read /etc/edge/edge.toml",
            Some(Box::new(E("permission denied", None))),
        );
        assert_eq!(
            error_chain(&e),
            "cannot read /etc/edge/edge.toml: permission denied"
        );
        let repeated = E(
            "request failed: connection refused",
            Some(Box::new(E("connection refused", None))),
        );
        assert_eq!(error_chain(&repeated), "request failed: connection refused");
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
        assert_eq!(unix_now_i64() as u64 / 10, unix_now() / 10);
    }
}
