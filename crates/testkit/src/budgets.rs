//! Cost budgets an author holds a router to: fuel per call and per state,
//! memory, answer size. `presence-router test` fails a case whose call
//! passed one, so a regression fails the author's own CI long before it
//! meets an operator's limits.
//!
//! Set in the case file, beside `cases:`, or on the command line (which
//! wins, budget by budget):
//!
//! ```yaml
//! budgets:
//!   fuel_per_call: 200000      # fuel one call may use
//!   fuel_per_state: 2000       # fuel per state of the batch (interest calls: one)
//!   memory: 2MiB               # the instance's linear memory after the call
//!   answer_entries: 5000       # routes + indices + user IDs of one answer
//! ```

use std::fmt;

use presence_router_runtime::{CallStats, format_bytes};

use crate::thousands;

/// The author's budgets; `None`: not held to one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budgets {
    pub fuel_per_call: Option<u64>,
    pub fuel_per_state: Option<u64>,
    pub memory: Option<u64>,
    pub answer_entries: Option<u64>,
}

impl Budgets {
    /// These budgets, each replaced by `over`'s where it sets one.
    pub fn overridden_by(self, over: Budgets) -> Budgets {
        Budgets {
            fuel_per_call: over.fuel_per_call.or(self.fuel_per_call),
            fuel_per_state: over.fuel_per_state.or(self.fuel_per_state),
            memory: over.memory.or(self.memory),
            answer_entries: over.answer_entries.or(self.answer_entries),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Budgets::default()
    }

    /// What a call of `states` states (1 for an interest call) that used
    /// `stats` passed, one line each; empty if it kept within every budget.
    pub fn overruns(&self, stats: &CallStats, states: usize) -> Vec<String> {
        let mut over = Vec::new();
        let states = u64::try_from(states.max(1)).unwrap_or(u64::MAX);
        if let Some(budget) = self.fuel_per_call
            && stats.fuel_used > budget
        {
            over.push(format!(
                "fuel {} for the call, over the budget of {} per call",
                thousands(stats.fuel_used),
                thousands(budget)
            ));
        }
        if let Some(budget) = self.fuel_per_state {
            let per_state = stats.fuel_used.div_ceil(states);
            if per_state > budget {
                over.push(format!(
                    "fuel {} per state ({} for {} state(s)), over the budget of {} per state",
                    thousands(per_state),
                    thousands(stats.fuel_used),
                    thousands(states),
                    thousands(budget)
                ));
            }
        }
        if let Some(budget) = self.memory
            && stats.memory_bytes > budget
        {
            over.push(format!(
                "memory {}, over the budget of {}",
                format_bytes(stats.memory_bytes),
                format_bytes(budget)
            ));
        }
        let entries = u64::try_from(stats.answer_entries).unwrap_or(u64::MAX);
        if let Some(budget) = self.answer_entries
            && entries > budget
        {
            over.push(format!(
                "an answer of {} entries, over the budget of {}",
                thousands(entries),
                thousands(budget)
            ));
        }
        over
    }
}

impl fmt::Display for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = self.fuel_per_call {
            parts.push(format!("fuel {} per call", thousands(n)));
        }
        if let Some(n) = self.fuel_per_state {
            parts.push(format!("fuel {} per state", thousands(n)));
        }
        if let Some(n) = self.memory {
            parts.push(format!("memory {}", format_bytes(n)));
        }
        if let Some(n) = self.answer_entries {
            parts.push(format!("answers of {} entries", thousands(n)));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(fuel_used: u64, memory_bytes: u64, answer_entries: usize) -> CallStats {
        CallStats {
            router: "r".into(),
            fuel_used,
            fuel_budget: 10_000_000,
            memory_bytes,
            answer_entries,
            elapsed: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_call_over_a_budget_says_which_and_by_how_much() {
        let budgets = Budgets {
            fuel_per_call: Some(1000),
            fuel_per_state: Some(300),
            memory: Some(1 << 20),
            answer_entries: Some(10),
        };
        assert!(budgets.overruns(&stats(900, 1 << 20, 10), 3).is_empty());
        assert_eq!(
            budgets.overruns(&stats(1001, 2 << 20, 11), 3),
            [
                "fuel 1,001 for the call, over the budget of 1,000 per call",
                "fuel 334 per state (1,001 for 3 state(s)), over the budget of 300 per state",
                "memory 2MiB, over the budget of 1MiB",
                "an answer of 11 entries, over the budget of 10",
            ]
        );
        // An interest call counts as one state.
        assert_eq!(budgets.overruns(&stats(301, 0, 0), 0).len(), 1);
        assert!(
            Budgets::default()
                .overruns(&stats(u64::MAX, u64::MAX, usize::MAX), 1)
                .is_empty()
        );
    }

    #[test]
    fn the_command_line_wins_budget_by_budget() {
        let file = Budgets {
            fuel_per_call: Some(1),
            memory: Some(2),
            ..Budgets::default()
        };
        let cli = Budgets {
            memory: Some(3),
            answer_entries: Some(4),
            ..Budgets::default()
        };
        assert_eq!(
            file.overridden_by(cli),
            Budgets {
                fuel_per_call: Some(1),
                fuel_per_state: None,
                memory: Some(3),
                answer_entries: Some(4),
            }
        );
        assert_eq!(
            file.overridden_by(cli).to_string(),
            "fuel 1 per call, memory 3 bytes, answers of 4 entries"
        );
    }
}
