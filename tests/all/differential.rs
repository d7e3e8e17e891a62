//! The example router in every language against the Rust one, and against
//! the documentation's Python router, on the same generated requests
//! (`presence-router test --against`'s comparison): a binding bug in one
//! language shows as a difference from the others. Also: the comparison
//! finds a real difference and shrinks it.

use presence_router_runtime::jsonl::Request;
use presence_router_testkit::differential::{self, Contender, Generation, Pair};
use presence_router_tests::{
    Language, conformance_contender, docs_python_router, example_router, guests, test_load_options,
};

/// Requests per pair: the seed is fixed, so each run tries the same ones.
const REQUESTS: usize = 400;

/// What differs between the Rust example router and `other` (nothing:
/// `None`), as a readable line.
async fn difference_from_rust(other: Contender) -> Option<String> {
    first_difference(other).await.map(|(at, difference)| {
        format!(
            "{at}: {} -> Rust {} / other {}",
            difference.request_line(),
            difference.a.to_json(),
            difference.b.to_json()
        )
    })
}

/// The first difference from the Rust example router, shrunk.
async fn first_difference(other: Contender) -> Option<(String, differential::Difference)> {
    let rust = conformance_contender(guests::EXAMPLE_ROUTER);
    let options = test_load_options();
    let generation = Generation {
        seed: 20261207,
        max_states: 16,
    };
    let mut generated = generation.requests(&rust, &other);
    let mut pair = Pair {
        a: rust.start(&options).await.expect("the Rust router loads"),
        b: other.start(&options).await.expect("the other router loads"),
    };
    let run = differential::run(&mut pair, &[], &mut generated, REQUESTS)
        .await
        .expect("both answer");
    match run.difference {
        None => {
            assert_eq!(run.agreed, REQUESTS);
            None
        }
        found => found,
    }
}

#[tokio::test]
async fn javascript_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::Js))).await,
        None
    );
}

#[tokio::test]
async fn python_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::Python))).await,
        None
    );
}

#[tokio::test]
async fn c_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::C))).await,
        None
    );
}

#[tokio::test]
async fn cpp_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::Cpp))).await,
        None
    );
}

#[tokio::test]
async fn zig_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::Zig))).await,
        None
    );
}

#[tokio::test]
async fn go_answers_as_rust() {
    assert_eq!(
        difference_from_rust(conformance_contender(example_router!(Language::Go))).await,
        None
    );
}

#[tokio::test]
async fn the_documentations_python_router_answers_as_rust() {
    assert_eq!(difference_from_rust(docs_python_router()).await, None);
}

#[tokio::test]
async fn a_changed_router_differs_and_the_difference_is_shrunk_to_one_plain_state() {
    let (_, difference) = first_difference(conformance_contender(guests::EXAMPLE_V2))
        .await
        .expect("the second version routes the blacklisted user's updates");
    let found = difference.request_line();
    let Request::GetUsersForStates(batch) = &difference.request else {
        panic!("a batch: {found}");
    };
    assert!(difference.original_states >= 1, "{found}");
    assert_eq!(batch.len(), 1, "{found}");
    assert_eq!(batch[0].user_id, "@mallory:example.com", "{found}");
    assert_eq!(
        (batch[0].status_msg.as_deref(), batch[0].last_active_ts),
        (None, 0),
        "{found}"
    );
}
