//! `presence-router test --against`'s comparison, for longer: requests made
//! from the fuzzer's bytes by the same generator (`generate.rs`), each sent
//! to `presence-router test --against … --replay -`, which answers whether
//! the two routers agreed; a difference is a crash, with the request and
//! both answers in its message.
//!
//! The routers run in that child process, not in this one: this target
//! links the model alone and builds in seconds, where linking the runtime
//! would build wasmtime again with the fuzzer's instrumentation, minutes
//! of CI time. Coverage guidance therefore sees the generator, not the
//! routers: this target is a long seeded search, not a guided one.
//!
//! `fuzz/run.sh` sets what it runs: DIFFERENTIAL_BIN (the CLI),
//! DIFFERENTIAL_COMPONENT and DIFFERENTIAL_CONFIG (`--component`,
//! `--config-json`), DIFFERENTIAL_AGAINST (`--against`), and
//! DIFFERENTIAL_PYTHON_PATH (`--python-path`, for a `python:` router).
#![no_main]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use presence_router_model::generate::RequestGenerator;

struct Comparison {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    generator: RequestGenerator,
}

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run fuzz/run.sh"))
}

fn start() -> Mutex<Comparison> {
    let config = setting("DIFFERENTIAL_CONFIG");
    let mut command = Command::new(setting("DIFFERENTIAL_BIN"));
    command.args([
        "test",
        "--component",
        &setting("DIFFERENTIAL_COMPONENT"),
        "--config-json",
        &config,
        "--against",
        &setting("DIFFERENTIAL_AGAINST"),
        "--replay",
        "-",
        "--no-cache",
    ]);
    if let Ok(path) = std::env::var("DIFFERENTIAL_PYTHON_PATH") {
        command.args(["--python-path", &path]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("presence-router starts");
    let stdin = child.stdin.take().expect("piped");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    Mutex::new(Comparison {
        _child: child,
        stdin,
        stdout,
        generator: RequestGenerator::new(RequestGenerator::users_in_config(&config), 16),
    })
}

static COMPARISON: OnceLock<Mutex<Comparison>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mut comparison = COMPARISON
        .get_or_init(start)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Ok(request) = comparison.generator.request(&mut Unstructured::new(data)) else {
        return;
    };
    let mut line = request.to_line();
    line.push('\n');
    comparison
        .stdin
        .write_all(line.as_bytes())
        .and_then(|()| comparison.stdin.flush())
        .expect("presence-router reads its requests");
    let mut verdict = String::new();
    comparison
        .stdout
        .read_line(&mut verdict)
        .expect("presence-router answers");
    assert!(
        verdict.starts_with(r#"{"agree":true}"#),
        "the two routers differ (or the comparison stopped): {verdict}"
    );
});
