//! A router whose answers are set by its configuration and whose
//! misbehaviour is triggered by the users it is asked about, so that one
//! component can play every part in the runtime's tests.
//!
//! Config: `{"routes": {USER: "all" | [INDEX, ...]}, "interested": {USER:
//! "all" | [USER, ...]}, "log_calls": bool, "parse_config": "ok" | "err" |
//! "panic" | "spin"}`, every key optional.
//!
//! A state from, or a question about, `@<command>:test` runs the command:
//! `spin`, `panic`, `balloon` (allocate until refused), `deep` (unbounded
//! recursion), `liar-index` (an index outside the batch), `liar-user` (a
//! route to `alice`), `send` (send-local-online-presence-to and a log line),
//! `send-bad` (send to `not-a-user`), `print` (stdout and stderr), `chatter`
//! (1,000 sends, log lines and stdout lines).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::OnceLock;

use matrix::presence_router::module_api::{self, LogLevel};

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Targets {
    All(AllMarker),
    Listed(Vec<serde_json::Value>),
}

#[derive(serde::Deserialize)]
enum AllMarker {
    #[serde(rename = "all")]
    All,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Config {
    routes: BTreeMap<String, Targets>,
    interested: BTreeMap<String, Targets>,
    log_calls: bool,
    parse_config: Option<String>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

fn config() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

/// Runs the command named by `@<command>:test`, if any; returns the
/// misbehaving answer for the commands that answer.
fn run_command(user_id: &str, batch_len: usize) -> Option<Vec<Route>> {
    let command = user_id.strip_prefix('@')?.strip_suffix(":test")?;
    match command {
        "spin" => loop {
            black_box(());
        },
        "panic" => panic!("scripted panic for {user_id}"),
        "balloon" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        "deep" => {
            // Recursion without end is the point: it must overflow the stack.
            #[allow(unconditional_recursion)]
            fn deep(depth: u64) -> u64 {
                black_box(deep(black_box(depth + 1))) + 1
            }
            Some(vec![Route {
                user_id: format!("@x{}:test", deep(0)),
                states: vec![],
            }])
        }
        "liar-index" => Some(vec![Route {
            user_id: "@a:test".into(),
            states: vec![batch_len as u32 + 5],
        }]),
        "liar-user" => Some(vec![Route {
            user_id: "alice".into(),
            states: vec![],
        }]),
        "send" => {
            module_api::send_local_online_presence_to(&[
                "@dave:example.com".into(),
                "@far_away_person:island".into(),
            ]);
            module_api::log(LogLevel::Info, "sent presence to two users");
            None
        }
        "chatter" => {
            for i in 0..1000 {
                module_api::send_local_online_presence_to(&[format!("@u{i}:example.com")]);
                module_api::log(LogLevel::Info, &format!("chatter {i}"));
                println!("stdout chatter {i}");
            }
            None
        }
        "send-bad" => {
            module_api::send_local_online_presence_to(&["not-a-user".into()]);
            None
        }
        "print" => {
            println!("hello from stdout");
            eprintln!("hello from stderr");
            None
        }
        _ => None,
    }
}

struct ScriptedRouter;

impl Guest for ScriptedRouter {
    fn parse_config(config: String) -> Result<(), String> {
        let config: Config = serde_json::from_str(&config).map_err(|e| e.to_string())?;
        if config.log_calls {
            module_api::log(LogLevel::Debug, "parse-config");
        }
        match config.parse_config.as_deref() {
            Some("err") => return Err("scripted refusal: `parse_config` is set to err".into()),
            Some("panic") => panic!("scripted panic in parse-config"),
            Some("spin") => loop {
                black_box(());
            },
            _ => {}
        }
        CONFIG
            .set(config)
            .map_err(|_| "configured twice".to_owned())
    }

    fn get_users_for_states(states: Vec<UserPresenceState>) -> Vec<Route> {
        let config = config();
        if config.log_calls {
            module_api::log(
                LogLevel::Debug,
                &format!("get-users-for-states with {} states", states.len()),
            );
        }
        for state in &states {
            if let Some(answer) = run_command(&state.user_id, states.len()) {
                return answer;
            }
        }
        config
            .routes
            .iter()
            .map(|(user_id, targets)| Route {
                user_id: user_id.clone(),
                states: match targets {
                    Targets::All(_) => (0..states.len() as u32).collect(),
                    Targets::Listed(indices) => indices
                        .iter()
                        .filter_map(|i| i.as_u64())
                        .map(|i| i as u32)
                        .collect(),
                },
            })
            .collect()
    }

    fn get_interested_users(user_id: String) -> InterestedUsers {
        let config = config();
        if config.log_calls {
            module_api::log(
                LogLevel::Debug,
                &format!("get-interested-users for {user_id}"),
            );
        }
        if let Some(routes) = run_command(&user_id, 0) {
            // The liars answer with a bad user ID here too.
            return InterestedUsers::Users(routes.into_iter().map(|r| r.user_id).collect());
        }
        match config.interested.get(&user_id) {
            Some(Targets::All(_)) => InterestedUsers::AllUsers,
            Some(Targets::Listed(users)) => InterestedUsers::Users(
                users
                    .iter()
                    .filter_map(|u| u.as_str())
                    .map(str::to_owned)
                    .collect(),
            ),
            None => InterestedUsers::Users(Vec::new()),
        }
    }
}

export!(ScriptedRouter);
