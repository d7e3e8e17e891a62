//! The `route` command's request parser, on arbitrary lines: a request or an
//! error text, never a panic; an accepted request names only valid users.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_router_model::jsonl::{Request, parse_request};
use presence_router_model::validate_user_id;

fuzz_target!(|line: &str| {
    match parse_request(line) {
        Ok(Request::GetUsersForStates(states)) => {
            for state in &states {
                assert!(validate_user_id(&state.user_id).is_ok());
            }
        }
        Ok(Request::GetInterestedUsers(user_id)) => assert!(validate_user_id(&user_id).is_ok()),
        Err(message) => assert!(!message.is_empty()),
    }
});
