//! One call of one router, whichever of the two callbacks it is: what the
//! callbacks differ in ([`RouterCall`]: which export, what handing the
//! answer on costs, how the set merges the answers; [`CheckedAnswer`]: an
//! answer's entries, whether it decides the call), and what a router's
//! call comes to ([`RouterOutcome`]).
//! `Router` and `RouterSet` have one call path, generic over the callback.

use std::collections::BTreeSet;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use presence_router_model::{
    CallStats, InterestedUsers, RouterFailure, UserPresenceState, UsersForStates,
};

use crate::guest::{CallUsage, CheckedInterest, CheckedRoutes, Failure, GuestInstance};
use crate::stats::Callback;

/// The validated result of one router's call, with the users it asked
/// presence to be sent to.
pub(crate) struct RouterAnswer<T> {
    pub answer: T,
    pub sends: Vec<String>,
    pub stats: CallStats,
}

/// What one router's call came to.
pub(crate) enum RouterOutcome<T> {
    Answered(RouterAnswer<T>),
    /// Failed, or skipped (the router is suspended): counted and reported.
    Failed(RouterFailure),
    /// Tried in a slice, and needed more: abandoned, to be made again with
    /// the router's full limits. Nothing of it was counted or reported.
    SliceUsedUp {
        /// Whether the router ran and used its slice up; false when it had
        /// no warm instance to run on (making one is not done in a slice)
        /// or was not to be tried in a slice at all.
        ran: bool,
    },
}

/// One of the two callbacks, with its arguments.
pub(crate) trait RouterCall {
    /// Which callback, for the figures.
    const CALLBACK: Callback;
    /// One router's checked answer.
    type Answer: CheckedAnswer;
    /// The set's answer, merged from its routers'.
    type Merged;

    /// Calls the export on a leased instance and checks the answer.
    fn call(&self, instance: &mut GuestInstance) -> Result<(Self::Answer, CallUsage), Failure>;

    /// What handing `answer` (of `entries` entries) on costs the embedder,
    /// to be paid from the router's credit; `None`: not paid for, and the
    /// call earns no credit.
    fn hand_on_cost(&self, answer: &Self::Answer, entries: usize) -> Option<u64>;

    /// Merges the answers of the routers that answered, in order. It may
    /// stop taking them once they decide the call: the routers after that
    /// are left out of the call's report as well.
    fn merge(answers: impl Iterator<Item = Self::Answer>) -> Self::Merged;

    /// The call's input, copied for a canary's shadow call.
    fn shadow_input(&self) -> ShadowInput;

    /// The size of its input: its states, or one user.
    fn input_size(&self) -> usize;

    /// A live router's answer, copied to compare a canary's with.
    fn live_answer(answer: &Self::Answer) -> LiveAnswer;
}

/// A live call, copied for a canary's shadow call.
#[derive(Clone)]
pub(crate) enum ShadowInput {
    States(Arc<[UserPresenceState]>),
    Interest(Arc<str>),
}

/// The live router's answer to it, as it was checked.
pub(crate) enum LiveAnswer {
    Routes(CheckedRoutes),
    Interest(CheckedInterest),
}

/// `get-users-for-states` on a batch.
pub(crate) struct GetUsersForStates<'a>(pub &'a [UserPresenceState]);

/// `get-interested-users` for one user.
pub(crate) struct GetInterestedUsers<'a>(pub &'a str);

impl RouterCall for GetUsersForStates<'_> {
    const CALLBACK: Callback = Callback::GetUsersForStates;
    type Answer = CheckedRoutes;
    type Merged = UsersForStates;

    fn call(&self, instance: &mut GuestInstance) -> Result<(CheckedRoutes, CallUsage), Failure> {
        instance.get_users_for_states(self.0)
    }

    fn shadow_input(&self) -> ShadowInput {
        ShadowInput::States(self.0.into())
    }

    fn input_size(&self) -> usize {
        self.0.len()
    }

    fn live_answer(answer: &CheckedRoutes) -> LiveAnswer {
        LiveAnswer::Routes(answer.clone())
    }

    /// A batch routed earns the router credit, and its answer costs it.
    fn hand_on_cost(&self, answer: &CheckedRoutes, entries: usize) -> Option<u64> {
        Some(answer.hand_on_cost(self.0.len(), entries))
    }

    fn merge(answers: impl Iterator<Item = CheckedRoutes>) -> UsersForStates {
        // Indices are gathered per user, then sorted and de-duplicated once:
        // a router's list is usually sorted already, which makes this one
        // pass; inserting into sets one by one was a fifth of a large batch.
        let mut merged = UsersForStates::new();
        for routes in answers {
            for (user_id, indices) in routes {
                match merged.entry(user_id) {
                    Entry::Occupied(mut entry) => entry.get_mut().extend(indices),
                    Entry::Vacant(entry) => {
                        entry.insert(indices);
                    }
                }
            }
        }
        for indices in merged.values_mut() {
            if !indices.is_sorted() {
                indices.sort_unstable();
            }
            indices.dedup();
        }
        merged
    }
}

impl RouterCall for GetInterestedUsers<'_> {
    const CALLBACK: Callback = Callback::GetInterestedUsers;
    type Answer = CheckedInterest;
    type Merged = InterestedUsers;

    fn call(&self, instance: &mut GuestInstance) -> Result<(CheckedInterest, CallUsage), Failure> {
        instance.get_interested_users(self.0)
    }

    fn shadow_input(&self) -> ShadowInput {
        ShadowInput::Interest(self.0.into())
    }

    fn input_size(&self) -> usize {
        1
    }

    fn live_answer(answer: &CheckedInterest) -> LiveAnswer {
        LiveAnswer::Interest(answer.clone())
    }

    /// Users are bounded by the call's answer entries: strings, hashed
    /// without calling back into the embedder's code. And an interest
    /// call, whose rate a user controls, earns no credit.
    fn hand_on_cost(&self, _answer: &CheckedInterest, _entries: usize) -> Option<u64> {
        None
    }

    fn merge(answers: impl Iterator<Item = CheckedInterest>) -> InterestedUsers {
        let mut users = BTreeSet::new();
        for answer in answers {
            match answer {
                // The first "all users" decides: whatever the routers after
                // it answered is left out.
                None => return InterestedUsers::All,
                Some(named) => users.extend(named),
            }
        }
        InterestedUsers::Users(users)
    }
}

/// Up to this many entries, an answer's hand-on cost is taken to be its
/// entries (an upper bound, and the common answer is far smaller).
const EXACT_HAND_ON_COST_FROM: u64 = 256;

/// One router's checked answer, whichever the callback.
pub(crate) trait CheckedAnswer {
    /// How many entries it has, against `limits.max_answer_entries`.
    fn answer_entries(&self) -> usize;

    /// Whether it decides the call: the routers after it are not needed
    /// (an interest call's "all users").
    fn decides_call(&self) -> bool;
}

impl CheckedAnswer for CheckedRoutes {
    fn answer_entries(&self) -> usize {
        self.iter().map(|(_, indices)| 1 + indices.len()).sum()
    }

    fn decides_call(&self) -> bool {
        false
    }
}

impl CheckedAnswer for CheckedInterest {
    fn answer_entries(&self) -> usize {
        self.as_ref().map_or(1, Vec::len)
    }

    fn decides_call(&self) -> bool {
        self.is_none()
    }
}

/// What handing an answer on costs the embedder.
trait HandOnCost {
    /// What handing the answer on costs an embedder that builds one
    /// collection of states per distinct list of indices, a list of most
    /// of the batch as the whole batch's less what it leaves out (as the
    /// Synapse module builds Python sets, hashing each state it adds or
    /// removes): a unit per user, and per distinct set of states (a user's
    /// routes merged) the fewer of those it names and those it leaves out,
    /// of `batch` states. `entries` is [`CheckedAnswer::answer_entries`].
    fn hand_on_cost(&self, batch: usize, entries: usize) -> u64;
}

impl HandOnCost for CheckedRoutes {
    fn hand_on_cost(&self, batch: usize, entries: usize) -> u64 {
        let entries = entries as u64;
        if entries <= EXACT_HAND_ON_COST_FROM {
            // A small answer costs at most its entries: no need to look
            // closer.
            return entries;
        }
        // The answer as the embedder gets it: each user's states once,
        // sorted (a router's routes to one user are merged, its repeated
        // indices are one), then each distinct set costs once.
        let mut per_user: std::collections::BTreeMap<&str, Vec<u32>> =
            std::collections::BTreeMap::new();
        for (user, indices) in self {
            per_user.entry(user).or_default().extend(indices);
        }
        let mut lists = std::collections::HashSet::with_capacity(per_user.len().min(4096));
        let mut cost = per_user.len() as u64;
        for indices in per_user.values_mut() {
            indices.sort_unstable();
            indices.dedup();
        }
        for indices in per_user.values() {
            if lists.insert(indices.as_slice()) {
                let named = indices.len().min(batch);
                cost += named.min(batch - named) as u64;
            }
        }
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[(&str, Vec<u32>)]) -> CheckedRoutes {
        list.iter()
            .map(|(user, indices)| (user.to_string(), indices.clone()))
            .collect()
    }

    #[test]
    fn the_hand_on_cost_is_that_of_the_answer_the_embedder_gets() {
        let half: Vec<u32> = (0..100).collect();
        // Repeated indices are one state: a half listed twice is a half.
        let twice: Vec<u32> = half.iter().chain(&half).copied().collect();
        let users: Vec<(String, Vec<u32>)> = (0..10)
            .map(|i| {
                (
                    format!("@u{i}:x"),
                    twice.iter().map(|s| (s + i) % 200).collect(),
                )
            })
            .collect();
        assert_eq!(
            users.hand_on_cost(200, users.answer_entries()),
            10 + 10 * 100
        );
        // A user's routes are merged before the sets are built: one shared
        // half plus one index each is a distinct set per user.
        let mut split = Vec::new();
        for i in 0..10u32 {
            split.push((format!("@u{i}:x"), half.clone()));
            split.push((format!("@u{i}:x"), vec![150 + i]));
        }
        assert_eq!(
            split.hand_on_cost(200, split.answer_entries()),
            10 + 10 * 99
        );
        // The same set for everyone costs once; the whole batch is free.
        let shared: CheckedRoutes = (0..300)
            .map(|i| (format!("@u{i}:x"), half.clone()))
            .collect();
        assert_eq!(shared.hand_on_cost(200, shared.answer_entries()), 300 + 100);
        let all: Vec<u32> = (0..200).collect();
        let everyone = routes(&[("@a:x", all.clone()), ("@b:x", all)]);
        assert_eq!(everyone.hand_on_cost(200, everyone.answer_entries()), 2);
        // A small answer is taken at its entries, an upper bound.
        let small: Vec<u32> = (0..100).collect();
        let few = routes(&[("@a:x", small.clone()), ("@b:x", small)]);
        assert_eq!(few.hand_on_cost(100, few.answer_entries()), 202);
    }
}
