//! A component whose exports have the names of a presence router's but not
//! the types.

wit_bindgen::generate!({ path: "wit", world: "wrong-types" });

struct WrongTypes;

impl Guest for WrongTypes {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<String>) -> Vec<u32> {
        Vec::new()
    }

    fn get_interested_users(_user_id: String) -> Vec<String> {
        Vec::new()
    }
}

export!(WrongTypes);
