//! Every configuration or component an operator can get wrong, with the
//! exact error text they see: `golden/NAME.yaml` must fail to load with the
//! text in `golden/NAME.err` (guest paths written as `$SCRIPTED`, ...).
//! Run with `BLESS=1` to rewrite the `.err` files after a deliberate change.
//! No error text may hold a control character.

use std::path::Path;

use presence_router_tests::{load, with_guest_names};

/// Guest paths become `$NAME`, and source positions in guest panic
/// messages (`lib.rs:104:30`) become `lib.rs:L:C`, so that editing a guest
/// doesn't churn the golden files.
fn with_placeholders(text: &str) -> String {
    let text = with_guest_names(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(".rs:") {
        let (before, after) = rest.split_at(at + ".rs:".len());
        out.push_str(before);
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let line = digits(after);
        let column = after[line..].strip_prefix(':').map_or(0, digits);
        if line > 0 && column > 0 {
            out.push_str("L:C");
            rest = &after[line + 1 + column..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn each_bad_configuration_fails_with_its_golden_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden");
    let bless = std::env::var_os("BLESS").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .map(|entry| entry.expect("readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "the golden cases are there");

    let mut mismatches = Vec::new();
    for input in &inputs {
        let yaml = std::fs::read_to_string(input).expect("readable");
        let actual = match load(&yaml).await {
            Ok(_) => "(loaded without error)".to_owned(),
            Err(e) => with_placeholders(&e.to_string()),
        };
        // Whatever a configuration holds, its error can't forge a log line
        // or drive a terminal: control characters arrive escaped.
        if actual.chars().any(char::is_control) {
            mismatches.push(format!(
                "{}: a control character in {actual:?}",
                input.display()
            ));
            continue;
        }
        let golden = input.with_extension("err");
        if bless {
            std::fs::write(&golden, format!("{actual}\n")).expect("writable");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected.trim_end() != actual {
            mismatches.push(format!(
                "{}:\n  expected: {}\n  actual:   {actual}",
                input.display(),
                expected.trim_end()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
