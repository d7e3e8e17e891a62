//! Hostile guest: spins forever in `get-users-for-states` (`loop {}`).

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    #[allow(clippy::empty_loop)]
    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        loop {}
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
