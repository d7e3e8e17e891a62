//! `presence-router test --component A --against B`: differential testing
//! of two routers (the comparison itself is the test kit's
//! `differential.rs`). Exit 0 when no difference was found, 1 when one
//! was, 2 when the test could not run.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use presence_router_runtime::jsonl::{Request, parse_request};
use presence_router_testkit::differential::{
    self, Contender, Difference, Generation, Pair, case_requests,
};
use presence_router_testkit::read_case_file;

/// What `--against` adds to `test`.
#[derive(clap::Args)]
pub struct AgainstArgs {
    /// Test the component against another router on the same requests: a
    /// component (.wasm), or `python:MODULE.CLASS`, the Python presence
    /// router it replaces, run without Synapse by --python. Reports the
    /// first request on which they differ, shrunk to a smallest batch.
    #[arg(long, value_name = "COMPONENT|python:MODULE.CLASS")]
    pub against: Option<String>,
    /// The other router's configuration (default: --config-json's).
    #[arg(long, value_name = "JSON", requires = "against")]
    pub against_config_json: Option<String>,
    /// The Python interpreter that runs a `python:` router.
    #[arg(
        long,
        value_name = "PYTHON",
        default_value = "python3",
        requires = "against"
    )]
    pub python: PathBuf,
    /// A directory the `python:` router's module is imported from (besides
    /// the working directory and PYTHONPATH).
    #[arg(long, value_name = "DIR", requires = "against")]
    pub python_path: Option<PathBuf>,
    /// The seed of the generated requests (default: a new one, printed).
    #[arg(long, requires = "against")]
    pub seed: Option<u64>,
    /// How many requests to generate.
    #[arg(long, value_name = "N", default_value_t = 1000, requires = "against")]
    pub requests: usize,
    /// The most states a generated batch holds (at most 100,000).
    #[arg(long, value_name = "N", default_value_t = 16, requires = "against",
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub max_states: u32,
    /// Compare on these JSON Lines requests (a recording; `-` for stdin)
    /// instead: one JSON line per request on stdout, `{"agree": true}` or
    /// `{"differ": …}`, ending at the first difference.
    #[arg(
        long,
        value_name = "FILE",
        requires = "against",
        conflicts_with = "seed"
    )]
    pub replay: Option<PathBuf>,
}

/// The two routers, the author's cases, and how to generate.
pub struct Differential<'a> {
    pub a: Contender,
    pub args: &'a AgainstArgs,
    pub cases: Option<PathBuf>,
    pub options: presence_router_runtime::LoadOptions,
}

impl Differential<'_> {
    pub async fn run(self) -> ExitCode {
        match self.compare().await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        }
    }

    /// Whether they agreed.
    async fn compare(self) -> anyhow::Result<bool> {
        let args = self.args;
        let Some(against) = &args.against else {
            anyhow::bail!("--against is required");
        };
        let b_config = match &args.against_config_json {
            Some(json) => crate::json_object("--against-config-json", json)?,
            None => self.a.config_json().to_owned(),
        };
        let b = match against.strip_prefix("python:") {
            Some(class) => Contender::Python {
                python: args.python.clone(),
                class: class.to_owned(),
                config_json: b_config,
                python_path: args.python_path.clone(),
            },
            None => Contender::Component {
                path: PathBuf::from(against),
                config_json: b_config,
            },
        };
        let mut pair = Pair {
            a: self
                .a
                .start(&self.options)
                .await
                .map_err(anyhow::Error::msg)?,
            b: b.start(&self.options).await.map_err(anyhow::Error::msg)?,
        };
        if let Some(path) = &args.replay {
            return replay(&mut pair, path).await;
        }
        let named = match &self.cases {
            Some(path) => case_requests(&read_case_file(path)?),
            None => Vec::new(),
        };
        let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
        let generation = Generation {
            seed,
            max_states: args.max_states as usize,
        };
        println!("differential test");
        println!("  A: {} with {}", pair.a.describe(), self.a.config_json());
        println!("  B: {} with {}", pair.b.describe(), b.config_json());
        println!(
            "  seed {seed} (the same requests again: --seed {seed}); {} generated requests of at \
             most {} states{}",
            args.requests,
            args.max_states,
            match &self.cases {
                Some(path) => format!(", after the {} of {}", named.len(), path.display()),
                None => String::new(),
            }
        );
        let started = Instant::now();
        let mut generated = generation.requests(&self.a, &b);
        let run = differential::run(&mut pair, &named, &mut generated, args.requests)
            .await
            .map_err(anyhow::Error::msg)?;
        match run.difference {
            None => {
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "PASS  {} requests answered alike ({:.0} per second)",
                    run.agreed,
                    run.agreed as f64 / seconds.max(1e-9)
                );
                Ok(true)
            }
            Some((at, difference)) => {
                print_difference(&at, run.agreed, &difference);
                Ok(false)
            }
        }
    }
}

/// `--replay`: a JSON line per request.
async fn replay(pair: &mut Pair, path: &std::path::Path) -> anyhow::Result<bool> {
    let input: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
            |e| anyhow::anyhow!("--replay {}: {e}", path.display()),
        )?))
    };
    let mut out = std::io::stdout().lock();
    for (number, line) in input.lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("--replay {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let request: Request = parse_request(&line).map_err(|why| {
            anyhow::anyhow!("--replay {} line {}: {why}", path.display(), number + 1)
        })?;
        let verdict = match pair.compare(&request).await.map_err(anyhow::Error::msg)? {
            None => serde_json::json!({ "agree": true }),
            Some(difference) => serde_json::json!({ "differ": {
                "line": number + 1,
                "request": serde_json::from_str::<serde_json::Value>(&difference.request_line())?,
                "original_states": difference.original_states,
                "a": difference.a.to_json(),
                "b": difference.b.to_json(),
            }}),
        };
        writeln!(out, "{verdict}")?;
        out.flush()?;
        if verdict.get("differ").is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn print_difference(at: &str, agreed: usize, difference: &Difference) {
    let states = match &difference.request {
        Request::GetUsersForStates(batch) => batch.len(),
        Request::GetInterestedUsers(_) => 0,
    };
    let shrunk = match &difference.request {
        Request::GetUsersForStates(_) if states < difference.original_states => {
            format!(
                "; shrunk from {} states to {states}",
                difference.original_states
            )
        }
        _ => String::new(),
    };
    println!("FAIL  {at}: the two routers differ, after {agreed} answered alike{shrunk}");
    println!("  request (replay it with `presence-router run`):");
    println!("    {}", difference.request_line());
    println!("  A answered: {}", difference.a.to_json());
    println!("  B answered: {}", difference.b.to_json());
}
