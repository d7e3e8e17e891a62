//! The checks of a router's answer against its batch, on arbitrary answers:
//! an accepted answer must really be inside the batch, within the cap, and
//! name only valid users; a refused one must say why.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use presence_router_model::{answer, validate_user_id};

#[derive(Arbitrary, Debug)]
struct Input {
    batch_len: u16,
    max_entries: u16,
    routes: Vec<(String, Vec<u32>)>,
    users: Vec<String>,
}

fuzz_target!(|input: Input| {
    let batch_len = usize::from(input.batch_len);
    let max = usize::from(input.max_entries);
    match answer::check_routes(&input.routes, batch_len, max) {
        Ok(()) => {
            let entries: usize = input.routes.iter().map(|(_, states)| 1 + states.len()).sum();
            assert!(entries <= max);
            for (user, states) in &input.routes {
                assert!(validate_user_id(user).is_ok());
                assert!(states.iter().all(|&i| (i as usize) < batch_len));
            }
        }
        Err(why) => assert!(!why.is_empty()),
    }
    if answer::check_users(&input.users, max).is_ok() {
        assert!(input.users.len() <= max);
        assert!(input.users.iter().all(|u| validate_user_id(u).is_ok()));
    }
});
