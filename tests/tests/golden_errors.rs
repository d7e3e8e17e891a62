//! Every configuration or component an operator can get wrong, with the
//! exact error text they see: `golden/NAME.yaml` must fail to load with the
//! text in `golden/NAME.err` (guest paths written as `$SCRIPTED`, ...).
//! Run with `BLESS=1` to rewrite the `.err` files after a deliberate change.

use std::path::Path;

use presence_router_tests::{guests, load};

fn with_placeholders(text: &str) -> String {
    [
        (guests::EXAMPLE_ROUTER, "$EXAMPLE_ROUTER"),
        (guests::SCRIPTED, "$SCRIPTED"),
        (guests::WRONG_TYPES, "$WRONG_TYPES"),
        (guests::MISSING_EXPORT, "$MISSING_EXPORT"),
    ]
    .iter()
    .fold(text.to_owned(), |text, (path, name)| {
        text.replace(path, name)
    })
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
