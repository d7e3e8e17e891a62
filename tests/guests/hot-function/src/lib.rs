//! Spends nearly all of its fuel in one function, `the_hot_function`,
//! called from `get-users-for-states` (a tenth as much in
//! `a_cool_function`); `get-interested-users` spends its own in
//! `the_interest_function`. The profile tests look for each by name, as
//! the widest frame under its callback's export.

use std::hint::black_box;

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

/// `rounds` steps of a hash, a loop the optimiser can't remove. A macro,
/// not a function: each function below must spend its fuel in itself.
macro_rules! spin {
    ($rounds:expr) => {{
        let mut x = black_box(0x9e37_79b9_7f4a_7c15_u64);
        for i in 0..black_box($rounds) {
            x = black_box(x.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x100_0000_01b3);
        }
        x
    }};
}

#[inline(never)]
fn the_hot_function(rounds: u32) -> u64 {
    spin!(rounds)
}

/// Unlike the hot one in its code, so that no optimisation merges them.
#[inline(never)]
fn a_cool_function(rounds: u32) -> u64 {
    let mut x = black_box(1u64);
    for i in 0..black_box(rounds) {
        x = black_box(x.wrapping_add(u64::from(i) | 1)).rotate_right(3);
    }
    x
}

#[inline(never)]
fn the_interest_function() -> u64 {
    spin!(10_000u32)
}

struct HotRouter;

impl Guest for HotRouter {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        let states_len = black_box(states.len() as u32);
        let hot = the_hot_function(20_000 * states_len);
        let cool = a_cool_function(2_000 * states_len);
        vec![Route {
            user_id: format!("@h{}_{}:example.com", hot % 7, cool % 7),
            states: (0..states.len() as u32).collect(),
        }]
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(vec![format!(
            "@i{}:example.com",
            the_interest_function() % 7
        )])
    }
}

export!(HotRouter);
