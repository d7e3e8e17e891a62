//! Hostile guest: allocates 1 MiB after 1 MiB until an allocation fails.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::hint::black_box;

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(black_box(vec![1u8; 1 << 20]));
        }
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
