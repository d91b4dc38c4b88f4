//! Pure: k-of-n agreement between detection sources. An address is accepted only when at
//! least `quorum` sources returned it and no other address has as many votes; anything else
//! (failures, a split, too few answers) yields no address, so no record changes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_config::ddns::Family;
use serde::Serialize;

use crate::model::{Rejection, classify};

/// What one source said for one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    /// An address that passed the checks.
    Address {
        /// The address.
        address: IpAddr,
    },
    /// An address that was refused.
    Rejected {
        /// The address.
        address: IpAddr,
        /// Why.
        reason: Rejection,
    },
    /// The source failed (timeout, HTTP error, unreadable answer).
    Failed {
        /// The error, rendered with its causes.
        error: String,
    },
}

impl Answer {
    /// Validates a raw address from a source.
    pub fn from_ip(ip: IpAddr, family: Family) -> Answer {
        match classify(ip, family) {
            Ok(address) => Answer::Address { address },
            Err(reason) => Answer::Rejected {
                address: ip,
                reason,
            },
        }
    }

    /// Short label for metrics: `ok`, `rejected` or `failed`.
    pub fn label(&self) -> &'static str {
        match self {
            Answer::Address { .. } => "ok",
            Answer::Rejected { .. } => "rejected",
            Answer::Failed { .. } => "failed",
        }
    }
}

/// The votes of one family and the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The family.
    pub family: Family,
    /// Each source's answer, in configuration order.
    pub answers: Vec<(String, Answer)>,
    /// The accepted address, if the quorum was met.
    pub address: Option<IpAddr>,
    /// Why no address was accepted (None when one was).
    pub failure: Option<String>,
}

/// Decides the address of `family` from `answers` with a quorum of `quorum`.
pub fn decide(family: Family, quorum: u8, answers: Vec<(String, Answer)>) -> Verdict {
    let mut votes: BTreeMap<IpAddr, usize> = BTreeMap::new();
    for (_, a) in &answers {
        if let Answer::Address { address } = a {
            *votes.entry(*address).or_default() += 1;
        }
    }
    let mut ranked: Vec<(IpAddr, usize)> = votes.into_iter().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.1));
    let need = usize::from(quorum.max(1));
    let failure = match ranked.as_slice() {
        [] => Some(format!(
            "no source returned a usable address ({} asked)",
            answers.len()
        )),
        [(_, top), (_, second), ..] if top == second => Some(format!(
            "sources disagree: {} each for {} different addresses",
            top,
            ranked.iter().filter(|(_, n)| n == top).count()
        )),
        [(ip, n), ..] if *n < need => Some(format!(
            "only {n} of {} sources agree on {ip}; the quorum is {need}",
            answers.len()
        )),
        _ => None,
    };
    let address = if failure.is_none() {
        ranked.first().map(|(ip, _)| *ip)
    } else {
        None
    };
    Verdict {
        family,
        answers,
        address,
        failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Answer {
        Answer::Address {
            address: s.parse().unwrap(),
        }
    }

    fn failed() -> Answer {
        Answer::Failed {
            error: "timed out".into(),
        }
    }

    fn run(q: u8, a: Vec<Answer>) -> Verdict {
        let named = a
            .into_iter()
            .enumerate()
            .map(|(i, a)| (format!("s{i}"), a))
            .collect();
        decide(Family::V4, q, named)
    }

    #[test]
    fn two_of_three_agreeing_win_over_a_liar() {
        let v = run(2, vec![ok("81.2.69.160"), ok("9.9.9.9"), ok("81.2.69.160")]);
        assert_eq!(v.address, Some("81.2.69.160".parse().unwrap()));
        assert!(v.failure.is_none());
    }

    #[test]
    fn one_liar_alone_never_wins() {
        // Two sources fail, the third lies: one vote is below the quorum.
        let v = run(2, vec![failed(), ok("9.9.9.9"), failed()]);
        assert_eq!(v.address, None);
        assert!(v.failure.unwrap().contains("quorum is 2"));
    }

    #[test]
    fn a_split_decides_nothing_even_with_quorum_one() {
        let v = run(1, vec![ok("81.2.69.160"), ok("9.9.9.9")]);
        assert_eq!(v.address, None);
        assert!(v.failure.unwrap().contains("disagree"));
    }

    #[test]
    fn all_failed_decides_nothing() {
        let v = run(2, vec![failed(), failed(), failed()]);
        assert_eq!(v.address, None);
        assert!(v.failure.unwrap().contains("no source"));
    }

    #[test]
    fn rejected_answers_do_not_vote() {
        let a = Answer::from_ip("100.64.1.2".parse().unwrap(), Family::V4);
        assert_eq!(a.label(), "rejected");
        let v = run(2, vec![a.clone(), a, ok("81.2.69.160")]);
        assert_eq!(v.address, None);
    }
}
