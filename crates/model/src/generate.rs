//! Requests made up from bytes, for testing two routers against each other
//! (`presence-router test --against`, its fuzz target) and for profiling a
//! router on batches nobody wrote down.
//!
//! The bytes decide everything (through [`arbitrary::Unstructured`]), so the
//! same bytes always make the same requests: a seeded run is repeated by
//! its seed, and a fuzzer's coverage guidance steers the choices. Batches
//! are mostly small, as Synapse's are (almost all hold one state), with the
//! edge cases the specification allows: states other than the four known
//! ones, the empty status message and Unicode in it, the same user twice in
//! a batch, timestamps at zero and at their maximum, user IDs of the
//! historical grammar and of the greatest length. User IDs are also drawn
//! from the routers' configurations, as a fuzzer uses a dictionary, so that
//! a rule about a configured user is exercised.

use std::collections::BTreeSet;

use arbitrary::{Result, Unstructured};

use crate::jsonl::Request;
use crate::{MAX_USER_ID_LEN, Presence, UserPresenceState, validate_user_id};

/// Makes requests from bytes.
#[derive(Clone, Debug)]
pub struct RequestGenerator {
    /// The configured users first, then users no configuration names.
    users: Vec<String>,
    configured: usize,
    max_states: usize,
}

/// Servers of generated user IDs: local-looking, remote, with a port, an
/// IP literal.
const SERVERS: &[&str] = &[
    "example.com",
    "elsewhere.example.org",
    "matrix.org:8448",
    "127.0.0.1",
    "[::1]:8448",
];

/// Pieces of generated localparts: the characters the historical grammar
/// allows that the new one does not, among ordinary ones.
const LOCALPARTS: &[&str] = &[
    "alice", "bob", "carol", "dave", "Eve", "mallory_", "x=y", "a.b", "q/r", "0", "~", "!", "%25",
];

/// Status messages: none differs from empty, and text a router must carry
/// through unchanged.
const STATUS_MESSAGES: &[&str] = &[
    "",
    "away",
    "🙂 out for lunch",
    "ليس هنا",
    "e\u{301}\u{200d}\u{feff}",
    "nul\0byte",
    "line\nbreak \"quoted\" \\",
];

/// States other than the four Synapse knows: federation does not check
/// them.
const OTHER_STATES: &[&str] = &["", "invisible", "org.example.custom", "ONLINE", "ö"];

impl RequestGenerator {
    /// Batches of at most `max_states` states, drawing user IDs from
    /// `configured` (kept when they are valid user IDs) and from made-up
    /// ones.
    pub fn new(configured: impl IntoIterator<Item = String>, max_states: usize) -> Self {
        let configured: BTreeSet<String> = configured
            .into_iter()
            .filter(|user| validate_user_id(user).is_ok())
            .collect();
        let count = configured.len();
        let mut users: Vec<String> = configured.into_iter().collect();
        for server in SERVERS {
            for localpart in LOCALPARTS.iter().take(4) {
                users.push(format!("@{localpart}:{server}"));
            }
        }
        // The longest user ID the specification allows.
        let server = "example.com";
        let localpart = "l".repeat(MAX_USER_ID_LEN - server.len() - 2);
        users.push(format!("@{localpart}:{server}"));
        users.retain(|user| validate_user_id(user).is_ok());
        RequestGenerator {
            users,
            configured: count,
            max_states,
        }
    }

    /// The users a configuration names: every string in it that is a
    /// Matrix user ID, at any depth.
    pub fn users_in_config(config_json: &str) -> Vec<String> {
        fn collect(value: &serde_json::Value, into: &mut BTreeSet<String>) {
            match value {
                serde_json::Value::String(s) if validate_user_id(s).is_ok() => {
                    into.insert(s.clone());
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
                serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, into)),
                _ => {}
            }
        }
        let mut users = BTreeSet::new();
        if let Ok(config) = serde_json::from_str::<serde_json::Value>(config_json) {
            collect(&config, &mut users);
        }
        users.into_iter().collect()
    }

    /// The most states a generated batch holds.
    pub fn max_states(&self) -> usize {
        self.max_states
    }

    /// One request: a batch for `get_users_for_states` four times in five,
    /// else a user for `get_interested_users`.
    pub fn request(&self, u: &mut Unstructured) -> Result<Request> {
        if u.ratio(4, 5)? {
            Ok(Request::GetUsersForStates(self.batch(u)?))
        } else {
            Ok(Request::GetInterestedUsers(self.user(u)?))
        }
    }

    /// A batch: one state half the time, up to `max_states`.
    pub fn batch(&self, u: &mut Unstructured) -> Result<Vec<UserPresenceState>> {
        let len = if self.max_states <= 1 || u.ratio(1, 2)? {
            self.max_states.min(1)
        } else {
            u.int_in_range(0..=self.max_states)?
        };
        self.batch_of(u, len)
    }

    /// A batch of exactly `len` states.
    pub fn batch_of(&self, u: &mut Unstructured, len: usize) -> Result<Vec<UserPresenceState>> {
        let mut batch: Vec<UserPresenceState> = Vec::with_capacity(len);
        for _ in 0..len {
            // The same state or the same user again, now and then.
            let state = match batch.len() {
                0 => self.state(u)?,
                n if u.ratio(1, 16)? => batch[u.choose_index(n)?].clone(),
                n if u.ratio(1, 8)? => UserPresenceState {
                    user_id: batch[u.choose_index(n)?].user_id.clone(),
                    ..self.state(u)?
                },
                _ => self.state(u)?,
            };
            batch.push(state);
        }
        Ok(batch)
    }

    /// A user ID: a configured one half the time (when there are any).
    pub fn user(&self, u: &mut Unstructured) -> Result<String> {
        if self.configured > 0 && u.ratio(1, 2)? {
            return Ok(self.users[u.choose_index(self.configured)?].clone());
        }
        if u.ratio(1, 4)? {
            // Made of pieces: the historical grammar's characters.
            let pieces = u.int_in_range(1..=3)?;
            let mut localpart = String::new();
            for _ in 0..pieces {
                localpart.push_str(u.choose(LOCALPARTS)?);
            }
            let user = format!("@{localpart}:{}", u.choose(SERVERS)?);
            if validate_user_id(&user).is_ok() {
                return Ok(user);
            }
        }
        Ok(self.users[u.choose_index(self.users.len())?].clone())
    }

    fn state(&self, u: &mut Unstructured) -> Result<UserPresenceState> {
        let state = match u.int_in_range(0..=9)? {
            0..=3 => Presence::Online,
            4 | 5 => Presence::Unavailable,
            6 | 7 => Presence::Offline,
            8 => Presence::Busy,
            _ => Presence::Other((*u.choose(OTHER_STATES)?).to_owned()),
        };
        let status_msg = match u.int_in_range(0..=3)? {
            0 | 1 => None,
            2 => Some((*u.choose(STATUS_MESSAGES)?).to_owned()),
            _ => Some("status ".repeat(u.int_in_range(1..=64)?)),
        };
        Ok(UserPresenceState {
            user_id: self.user(u)?,
            state,
            last_active_ts: timestamp(u)?,
            last_federation_update_ts: timestamp(u)?,
            last_user_sync_ts: timestamp(u)?,
            status_msg,
            currently_active: u.arbitrary()?,
        })
    }
}

/// Zero, the greatest, or a plausible time in milliseconds.
fn timestamp(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=7)? {
        0 => 0,
        1 => i64::MAX as u64,
        _ => 1_700_000_000_000 + u.int_in_range(0..=10_000_000)?,
    })
}

/// Requests from a seed: `bytes_per_request` seeded bytes each, as a
/// fuzzer would give them, so that a run is repeated by its seed alone.
pub struct SeededRequests {
    generator: RequestGenerator,
    rng: fastrand::Rng,
    bytes: Vec<u8>,
}

impl SeededRequests {
    /// Enough bytes for a batch of the largest size with long fields.
    const BYTES_PER_STATE: usize = 64;
    /// The most states given bytes of their own (6.4 MB of them).
    const MAX_STATES_WITH_BYTES: usize = 100_000;

    pub fn new(generator: RequestGenerator, seed: u64) -> Self {
        // Bounded: past it, the rest of a batch repeats zero-valued choices.
        let states = generator.max_states.clamp(1, Self::MAX_STATES_WITH_BYTES);
        let len = (states + 1) * Self::BYTES_PER_STATE;
        SeededRequests {
            generator,
            rng: fastrand::Rng::with_seed(seed),
            bytes: vec![0; len],
        }
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        self.rng.fill(&mut self.bytes);
        let mut u = Unstructured::new(&self.bytes);
        // Running out of bytes only makes the rest zero-valued choices:
        // never an error with `Unstructured`'s defaults, so the fallback is
        // never taken in practice.
        self.generator
            .request(&mut u)
            .unwrap_or(Request::GetInterestedUsers(self.generator.users[0].clone()))
    }

    /// The next batch, of exactly `len` states (at most the generator's
    /// `max_states` are given their own bytes; the rest repeat them).
    pub fn next_batch_of(&mut self, len: usize) -> Vec<UserPresenceState> {
        self.rng.fill(&mut self.bytes);
        self.generator
            .batch_of(&mut Unstructured::new(&self.bytes), len)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> RequestGenerator {
        RequestGenerator::new(
            RequestGenerator::users_in_config(
                r#"{"always_send_to_users": ["@special:example.com"], "n": 3, "x": ["not a user"]}"#,
            ),
            20,
        )
    }

    #[test]
    fn the_same_seed_makes_the_same_requests() {
        let mut a = SeededRequests::new(generator(), 7);
        let mut b = SeededRequests::new(generator(), 7);
        let mut c = SeededRequests::new(generator(), 8);
        let from_a: Vec<_> = (0..50).map(|_| a.next_request()).collect();
        let from_b: Vec<_> = (0..50).map(|_| b.next_request()).collect();
        let from_c: Vec<_> = (0..50).map(|_| c.next_request()).collect();
        assert_eq!(from_a, from_b);
        assert_ne!(from_a, from_c);
    }

    #[test]
    fn requests_are_valid_and_reach_the_configured_user_and_the_edges() {
        let mut requests = SeededRequests::new(generator(), 1);
        let (mut configured, mut other_state, mut empty_batch, mut interest) = (0, 0, 0, 0);
        let mut largest = 0;
        for _ in 0..2000 {
            match requests.next_request() {
                Request::GetUsersForStates(batch) => {
                    empty_batch += usize::from(batch.is_empty());
                    largest = largest.max(batch.len());
                    for state in &batch {
                        validate_user_id(&state.user_id).expect("a valid user ID");
                        configured += usize::from(state.user_id == "@special:example.com");
                        other_state += usize::from(matches!(state.state, Presence::Other(_)));
                    }
                }
                Request::GetInterestedUsers(user) => {
                    validate_user_id(&user).expect("a valid user ID");
                    interest += 1;
                }
            }
        }
        assert!(
            configured > 100,
            "the configured user drawn {configured} times"
        );
        assert!(other_state > 10 && empty_batch > 0 && interest > 100);
        assert_eq!(largest, 20);
    }

    #[test]
    fn users_in_config_are_its_user_ids_at_any_depth() {
        assert_eq!(
            RequestGenerator::users_in_config(r#"{"a": {"b": ["@x:y.z", "nope"]}, "c": "@w:v"}"#),
            vec!["@w:v".to_owned(), "@x:y.z".to_owned()]
        );
    }
}
