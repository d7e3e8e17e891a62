//! Two routers on the same requests: a port against the router it
//! replaces (a component, or the Python class run by `python_router.rs`),
//! or one language's build against another's. What `presence-router test
//! --against` runs.
//!
//! Each request goes to both; their answers are compared as Synapse would
//! use them (routes and interest as sets, a user routed nothing is no user,
//! equal states in a batch are one state) together with whom each asked
//! presence to be sent to. The first request on which they differ is
//! shrunk, by removing states and then plainer fields while the difference
//! stays, to a smallest batch that still shows it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use presence_router_runtime::generate::{RequestGenerator, SeededRequests};
use presence_router_runtime::jsonl::Request;
use presence_router_runtime::{
    Limits, LoadOptions, ModuleApi, Presence, RouterSet, UserPresenceState,
};

use crate::python_router::PythonRouter;
pub use crate::router_answer::{Answer, Outcome};
use crate::single_router;

/// One side of the comparison, as the author names it.
#[derive(Clone, Debug)]
pub enum Contender {
    /// A component with the configuration `parse-config` gets.
    Component { path: PathBuf, config_json: String },
    /// A Python presence router class (`module.Class`) and its config,
    /// run by `python`.
    Python {
        python: PathBuf,
        class: String,
        config_json: String,
        python_path: Option<PathBuf>,
    },
}

impl Contender {
    /// The configuration the router is given, for the users it names.
    pub fn config_json(&self) -> &str {
        match self {
            Contender::Component { config_json, .. } | Contender::Python { config_json, .. } => {
                config_json
            }
        }
    }

    /// Loads or starts the router; the error names it and says why.
    pub async fn start(&self, options: &LoadOptions) -> Result<Running, String> {
        match self {
            Contender::Component { path, config_json } => {
                // The default limits, but for those of time (the rate of
                // sends, the time budget): what they do depends on the
                // clock and the machine's load, and the other side has
                // none.
                let limits = Limits {
                    send_users_per_second: u32::MAX,
                    timeout: Limits::MAX_TIMEOUT,
                    ..Limits::DEFAULT
                };
                let config = single_router(path, config_json, limits);
                let set = RouterSet::load_with(&config, Arc::new(QuietModuleApi), options)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(Running::Component {
                    set,
                    describe: path.display().to_string(),
                })
            }
            Contender::Python {
                python,
                class,
                config_json,
                python_path,
            } => Ok(Running::Python(PythonRouter::start(
                python,
                class,
                config_json,
                python_path.as_deref(),
            )?)),
        }
    }
}

/// Sends and log lines go nowhere: sends are compared from the answer.
struct QuietModuleApi;

impl ModuleApi for QuietModuleApi {
    fn send_local_online_presence_to(&self, _router: &str, _users: &[String]) {}
    fn guest_log(&self, _router: &str, _level: presence_router_runtime::LogLevel, _message: &str) {}
}

/// A router ready for requests.
pub enum Running {
    Component { set: RouterSet, describe: String },
    Python(PythonRouter),
}

impl Running {
    pub fn describe(&self) -> &str {
        match self {
            Running::Component { describe, .. } => describe,
            Running::Python(python) => python.describe(),
        }
    }

    /// Its answer; the error is the harness's (a Python interpreter that
    /// died), not the router's failure, which is an [`Outcome::Failed`].
    pub async fn answer(&mut self, request: &Request) -> Result<Answer, String> {
        match self {
            Running::Component { set, .. } => Ok(match request {
                Request::GetUsersForStates(batch) => {
                    let routed = set.get_users_for_states(batch).await;
                    Answer {
                        outcome: match routed.failures.first() {
                            Some(failure) => Outcome::Failed(failure.message.clone()),
                            None => Outcome::Routes(
                                routed
                                    .answer
                                    .into_iter()
                                    .map(|(user, indices)| (user, indices.into_iter().collect()))
                                    .collect(),
                            ),
                        },
                        sends: routed.sent_presence_to.into_iter().collect(),
                    }
                }
                Request::GetInterestedUsers(user) => {
                    let routed = set.get_interested_users(user).await;
                    Answer {
                        outcome: match routed.failures.first() {
                            Some(failure) => Outcome::Failed(failure.message.clone()),
                            None => Outcome::Interest(routed.answer),
                        },
                        sends: routed.sent_presence_to.into_iter().collect(),
                    }
                }
            }),
            Running::Python(python) => python.answer(request),
        }
    }
}

/// The batch of a request (an interest request has none).
fn batch_of(request: &Request) -> &[UserPresenceState] {
    match request {
        Request::GetUsersForStates(batch) => batch,
        Request::GetInterestedUsers(_) => &[],
    }
}

/// A request on which the two routers differ, shrunk.
#[derive(Clone, Debug)]
pub struct Difference {
    /// The smallest request found that still shows it.
    pub request: Request,
    /// States in the request as first found.
    pub original_states: usize,
    pub a: Answer,
    pub b: Answer,
}

impl Difference {
    /// The request as a JSON Lines request line: `presence-router run`
    /// replays it.
    pub fn request_line(&self) -> String {
        self.request.to_line()
    }
}

/// Two routers to compare.
pub struct Pair {
    pub a: Running,
    pub b: Running,
}

impl Pair {
    /// Both answers to `request`, if they differ.
    pub async fn differs(&mut self, request: &Request) -> Result<Option<(Answer, Answer)>, String> {
        let a = self.a.answer(request).await?;
        let b = self.b.answer(request).await?;
        let batch = batch_of(request);
        Ok((a.normalized(batch) != b.normalized(batch)).then_some((a, b)))
    }

    /// The difference on `request`, shrunk, if there is one.
    pub async fn compare(&mut self, request: &Request) -> Result<Option<Difference>, String> {
        let Some((a, b)) = self.differs(request).await? else {
            return Ok(None);
        };
        let original_states = batch_of(request).len();
        let mut difference = Difference {
            request: request.clone(),
            original_states,
            a,
            b,
        };
        if let Request::GetUsersForStates(batch) = request {
            self.shrink(batch.clone(), &mut difference).await?;
        }
        Ok(Some(difference))
    }

    /// Removes states (halves, then one at a time) and then makes each
    /// remaining state plainer, keeping each change that keeps a
    /// difference, until none does.
    async fn shrink(
        &mut self,
        mut batch: Vec<UserPresenceState>,
        found: &mut Difference,
    ) -> Result<(), String> {
        let mut chunk = batch.len().div_ceil(2).max(1);
        while !batch.is_empty() {
            let mut removed_any = false;
            let mut start = 0;
            while start < batch.len() {
                let mut candidate = batch.clone();
                candidate.drain(start..(start + chunk).min(batch.len()));
                if self.keep_if_differs(candidate.clone(), found).await? {
                    batch = candidate;
                    removed_any = true;
                } else {
                    start += chunk;
                }
            }
            if chunk == 1 && !removed_any {
                break;
            }
            chunk = if removed_any {
                chunk
            } else {
                chunk.div_ceil(2)
            };
            chunk = chunk.min(batch.len().max(1));
        }
        for i in 0..batch.len() {
            for plainer in PLAINER {
                let mut candidate = batch.clone();
                plainer(&mut candidate[i]);
                if candidate[i] != batch[i]
                    && self.keep_if_differs(candidate.clone(), found).await?
                {
                    batch = candidate;
                }
            }
        }
        Ok(())
    }

    async fn keep_if_differs(
        &mut self,
        batch: Vec<UserPresenceState>,
        found: &mut Difference,
    ) -> Result<bool, String> {
        let request = Request::GetUsersForStates(batch);
        match self.differs(&request).await? {
            Some((a, b)) => {
                *found = Difference {
                    request,
                    original_states: found.original_states,
                    a,
                    b,
                };
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Ways to make a state plainer, one field at a time: what shrinking
/// tries, each on the state as shrunk so far.
const PLAINER: [fn(&mut UserPresenceState); 4] = [
    |s| s.status_msg = None,
    |s| s.state = Presence::Online,
    |s| s.currently_active = false,
    |s| {
        s.last_active_ts = 0;
        s.last_federation_update_ts = 0;
        s.last_user_sync_ts = 0;
    },
];

/// What a differential run found.
#[derive(Debug)]
pub struct DifferentialRun {
    /// Requests both routers answered alike before the first difference.
    pub agreed: usize,
    /// The first difference, shrunk; with where it came from (`case NAME`,
    /// `generated request N`, `line N`).
    pub difference: Option<(String, Difference)>,
}

/// How large the generated requests are, and from which seed (how many,
/// [`run`] is told).
#[derive(Clone, Copy, Debug)]
pub struct Generation {
    pub seed: u64,
    pub max_states: usize,
}

impl Generation {
    /// The generator for a pair: user IDs from both configurations.
    pub fn requests(&self, a: &Contender, b: &Contender) -> SeededRequests {
        let users = RequestGenerator::users_in_config(a.config_json())
            .into_iter()
            .chain(RequestGenerator::users_in_config(b.config_json()));
        SeededRequests::new(RequestGenerator::new(users, self.max_states), self.seed)
    }
}

/// Compares `pair` on `named` requests first (the author's cases), then on
/// generated ones; stops at the first difference.
pub async fn run(
    pair: &mut Pair,
    named: &[(String, Request)],
    generated: &mut SeededRequests,
    count: usize,
) -> Result<DifferentialRun, String> {
    let mut agreed = 0;
    for (name, request) in named {
        if let Some(difference) = pair.compare(request).await? {
            return Ok(DifferentialRun {
                agreed,
                difference: Some((format!("case `{name}`"), difference)),
            });
        }
        agreed += 1;
    }
    for i in 1..=count {
        let request = generated.next_request();
        if let Some(difference) = pair.compare(&request).await? {
            return Ok(DifferentialRun {
                agreed,
                difference: Some((format!("generated request {i}"), difference)),
            });
        }
        agreed += 1;
    }
    Ok(DifferentialRun {
        agreed,
        difference: None,
    })
}

/// The author's cases as requests, by case name: each batch, and each user
/// whose interest a case asks. Cases with a configuration of their own,
/// and configuration refusals, are for one router, not for a comparison.
pub fn case_requests(cases: &[crate::Case]) -> Vec<(String, Request)> {
    cases
        .iter()
        .filter(|case| case.config_json.is_none())
        .filter_map(|case| {
            let request = match &case.call {
                crate::CaseCall::UsersForStates { batch, .. } => {
                    Request::GetUsersForStates(batch.clone())
                }
                crate::CaseCall::InterestedUsers { user_id, .. } => {
                    Request::GetInterestedUsers(user_id.clone())
                }
                crate::CaseCall::ConfigError { .. } => return None,
            };
            Some((case.name.clone(), request))
        })
        .collect()
}

/// The default Python interpreter: `python3` on the `PATH`.
pub fn default_python() -> &'static Path {
    Path::new("python3")
}
