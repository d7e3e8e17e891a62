//! Hostile guest: recurses without end, until the stack overflows.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::hint::black_box;

#[allow(unconditional_recursion)]
fn deeper(depth: u64) -> u64 {
    black_box(deeper(black_box(depth + 1))) + 1
}

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        vec![Route {
            user_id: format!("@depth{}:x", deeper(0)),
            states: Vec::new(),
        }]
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
