//! Hostile guest: burns wall-clock time on 16 MiB `memory.fill`s, which cost almost no fuel.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::hint::black_box;

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        let mut buffer = vec![0u8; 16 << 20];
        let mut byte = 0u8;
        loop {
            // One `memory.fill` instruction: a few units of fuel, milliseconds
            // of host time.
            unsafe { std::ptr::write_bytes(buffer.as_mut_ptr(), byte, buffer.len()) };
            black_box(&mut buffer);
            byte = byte.wrapping_add(1);
        }
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
