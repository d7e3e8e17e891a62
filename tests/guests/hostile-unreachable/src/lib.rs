//! Hostile guest: executes `unreachable` at once: a trap with no message.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        core::arch::wasm32::unreachable()
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
