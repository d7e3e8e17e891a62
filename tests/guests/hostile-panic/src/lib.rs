//! Hostile guest: panics at once, with a message.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        panic!("hostile panic on a batch of {} states", states.len())
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        panic!("hostile panic for {user_id}")
    }
}

export!(Hostile);
