//! Checks a router's answer against the batch it was given, before any of it
//! is believed. One bad entry makes the whole answer invalid: a router that
//! gets part of its answer wrong can't be trusted with the rest.
//!
//! The checks work on borrowed data, so that the runtime can run them on an
//! answer still in guest memory: the size first, before anything is read,
//! then each entry, before anything is copied out.

use crate::user_id::validate_user_id;

/// Checks the size of a `get-users-for-states` answer: its routes and all
/// their state indices, against `max_entries`.
pub fn check_route_count(routes: usize, indices: usize, max_entries: usize) -> Result<(), String> {
    let entries = routes.saturating_add(indices);
    if entries > max_entries {
        return Err(format!(
            "the answer has {entries} entries (routes and state indices), \
             more than limits.max_answer_entries = {max_entries}"
        ));
    }
    Ok(())
}

/// Checks route number `i`: a valid user ID, and indices inside the batch.
pub fn check_route(
    i: usize,
    user_id: &str,
    states: &[u32],
    batch_len: usize,
) -> Result<(), String> {
    validate_user_id(user_id).map_err(|why| format!("route {i}: {why}"))?;
    if let Some(&bad) = states.iter().find(|&&index| index as usize >= batch_len) {
        return Err(format!(
            "route {i} ({user_id}): state index {bad} is outside the batch of {batch_len} state(s)"
        ));
    }
    Ok(())
}

/// Checks a whole `get-users-for-states` answer.
pub fn check_routes<S: AsRef<str>>(
    routes: &[(S, Vec<u32>)],
    batch_len: usize,
    max_entries: usize,
) -> Result<(), String> {
    let indices = routes
        .iter()
        .map(|(_, states)| states.len())
        .fold(0usize, usize::saturating_add);
    check_route_count(routes.len(), indices, max_entries)?;
    for (i, (user_id, states)) in routes.iter().enumerate() {
        check_route(i, user_id.as_ref(), states, batch_len)?;
    }
    Ok(())
}

/// Checks the size of a list of users (a `users(...)` answer, or everyone
/// named in `send-local-online-presence-to` calls).
pub fn check_user_count(users: usize, max_entries: usize) -> Result<(), String> {
    if users > max_entries {
        return Err(format!(
            "{users} users, more than limits.max_answer_entries = {max_entries}"
        ));
    }
    Ok(())
}

/// Checks user number `i` of a list.
pub fn check_user(i: usize, user_id: &str) -> Result<(), String> {
    validate_user_id(user_id).map_err(|why| format!("user {i}: {why}"))
}

/// Checks a `users(...)` answer of `get-interested-users`.
pub fn check_users<S: AsRef<str>>(users: &[S], max_entries: usize) -> Result<(), String> {
    check_user_count(users.len(), max_entries)?;
    users
        .iter()
        .enumerate()
        .try_for_each(|(i, user)| check_user(i, user.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(entries: &[(&str, &[u32])]) -> Vec<(String, Vec<u32>)> {
        entries
            .iter()
            .map(|(user, states)| (user.to_string(), states.to_vec()))
            .collect()
    }

    #[test]
    fn routes_inside_the_batch_pass() {
        assert_eq!(
            check_routes(&routes(&[("@a:x", &[0, 2]), ("@b:y", &[])]), 3, 100),
            Ok(())
        );
    }

    #[test]
    fn an_index_outside_the_batch_invalidates_the_answer() {
        let err = check_routes(&routes(&[("@a:x", &[0]), ("@b:x", &[1, 3])]), 3, 100).unwrap_err();
        assert_eq!(
            err,
            "route 1 (@b:x): state index 3 is outside the batch of 3 state(s)"
        );
    }

    #[test]
    fn a_bad_user_id_invalidates_the_answer() {
        let err = check_routes(&routes(&[("alice", &[0])]), 3, 100).unwrap_err();
        assert_eq!(err, "route 0: \"alice\" does not start with `@`");
    }

    #[test]
    fn answers_are_capped_in_entries() {
        let err = check_routes(&routes(&[("@a:x", &[0; 10])]), 1, 10).unwrap_err();
        assert!(err.contains("11 entries"), "{err}");
        let err = check_users(&["@a:x"; 11], 10).unwrap_err();
        assert_eq!(err, "11 users, more than limits.max_answer_entries = 10");
    }

    #[test]
    fn interest_is_checked_for_user_ids() {
        // Sends are checked with the same pieces, as they arrive (the
        // runtime's `tests/all/sends_and_logs.rs`).
        let err = check_users(&["@a:x", "@:x"], 10).unwrap_err();
        assert_eq!(err, "user 1: \"@:x\" has an empty localpart");
        assert_eq!(
            check_user(0, "@b:").unwrap_err(),
            "user 0: \"@b:\": the server name is empty"
        );
        assert_eq!(
            check_user_count(12, 10).unwrap_err(),
            "12 users, more than limits.max_answer_entries = 10"
        );
    }
}
