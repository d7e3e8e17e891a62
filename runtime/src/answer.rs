//! Checks a router's answer against the batch it was given, before any of it
//! is believed. One bad entry makes the whole answer invalid: a router that
//! gets part of its answer wrong can't be trusted with the rest.

use crate::guest::{RawInterestedUsers, RawRoute};
use crate::user_id::validate_user_id;

/// A checked `get-users-for-states` answer: (user, indices) pairs.
pub(crate) type CheckedRoutes = Vec<(String, Vec<u32>)>;

/// A checked `get-interested-users` answer: `None` is `all-users`.
pub(crate) type CheckedInterest = Option<Vec<String>>;

/// Checks every route: a valid user ID, indices inside the batch, and no
/// more than `max_entries` routes and indices in all.
pub(crate) fn check_routes(
    routes: Vec<RawRoute>,
    batch_len: usize,
    max_entries: usize,
) -> Result<CheckedRoutes, String> {
    let entries = routes.iter().fold(routes.len(), |sum, route| {
        sum.saturating_add(route.states.len())
    });
    if entries > max_entries {
        return Err(format!(
            "the answer has {entries} entries (routes and state indices), more than limits.max_answer_entries = {max_entries}"
        ));
    }
    for (i, route) in routes.iter().enumerate() {
        validate_user_id(&route.user_id).map_err(|why| format!("route {i}: {why}"))?;
        if let Some(&bad) = route
            .states
            .iter()
            .find(|&&index| index as usize >= batch_len)
        {
            return Err(format!(
                "route {i} ({}): state index {bad} is outside the batch of {batch_len} state(s)",
                route.user_id
            ));
        }
    }
    Ok(routes
        .into_iter()
        .map(|route| (route.user_id, route.states))
        .collect())
}

/// Checks a `users(...)` answer: valid user IDs, no more than `max_entries`.
pub(crate) fn check_interest(
    answer: RawInterestedUsers,
    max_entries: usize,
) -> Result<CheckedInterest, String> {
    match answer {
        RawInterestedUsers::AllUsers => Ok(None),
        RawInterestedUsers::Users(users) => {
            check_user_list(&users, max_entries, "user")?;
            Ok(Some(users))
        }
    }
}

/// Checks the users of all `send-local-online-presence-to` calls of one
/// callback.
pub(crate) fn check_sends(sends: &[Vec<String>], max_entries: usize) -> Result<(), String> {
    let total = sends
        .iter()
        .map(Vec::len)
        .fold(0usize, usize::saturating_add);
    if total > max_entries {
        return Err(format!(
            "send-local-online-presence-to was given {total} users in all, more than limits.max_answer_entries = {max_entries}"
        ));
    }
    for (call, users) in sends.iter().enumerate() {
        check_user_list(users, max_entries, "user")
            .map_err(|why| format!("send-local-online-presence-to call {call}: {why}"))?;
    }
    Ok(())
}

fn check_user_list(users: &[String], max_entries: usize, what: &str) -> Result<(), String> {
    if users.len() > max_entries {
        return Err(format!(
            "{} users, more than limits.max_answer_entries = {max_entries}",
            users.len()
        ));
    }
    for (i, user) in users.iter().enumerate() {
        validate_user_id(user).map_err(|why| format!("{what} {i}: {why}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(user: &str, states: &[u32]) -> RawRoute {
        RawRoute {
            user_id: user.to_owned(),
            states: states.to_vec(),
        }
    }

    #[test]
    fn routes_inside_the_batch_pass_unchanged() {
        let checked =
            check_routes(vec![route("@a:x", &[0, 2]), route("@b:y", &[])], 3, 100).unwrap();
        assert_eq!(
            checked,
            vec![("@a:x".to_owned(), vec![0, 2]), ("@b:y".to_owned(), vec![])]
        );
    }

    #[test]
    fn an_index_outside_the_batch_invalidates_the_answer() {
        let err =
            check_routes(vec![route("@a:x", &[0]), route("@b:x", &[1, 3])], 3, 100).unwrap_err();
        assert_eq!(
            err,
            "route 1 (@b:x): state index 3 is outside the batch of 3 state(s)"
        );
    }

    #[test]
    fn a_bad_user_id_invalidates_the_answer() {
        let err = check_routes(vec![route("alice", &[0])], 3, 100).unwrap_err();
        assert_eq!(err, "route 0: \"alice\" does not start with `@`");
    }

    #[test]
    fn answers_are_capped_in_entries() {
        let err = check_routes(vec![route("@a:x", &[0; 10])], 1, 10).unwrap_err();
        assert!(err.contains("11 entries"), "{err}");
        let users = RawInterestedUsers::Users(vec!["@a:x".to_owned(); 11]);
        assert!(check_interest(users, 10).unwrap_err().contains("11 users"));
    }

    #[test]
    fn interest_and_sends_are_checked_for_user_ids() {
        assert_eq!(check_interest(RawInterestedUsers::AllUsers, 0), Ok(None));
        let err = check_interest(
            RawInterestedUsers::Users(vec!["@a:x".into(), "@:x".into()]),
            10,
        )
        .unwrap_err();
        assert_eq!(err, "user 1: \"@:x\" has an empty localpart");
        let err = check_sends(&[vec!["@a:x".into()], vec!["@b:".into()]], 10).unwrap_err();
        assert_eq!(
            err,
            "send-local-online-presence-to call 1: user 0: \"@b:\": the server name is empty"
        );
    }
}
