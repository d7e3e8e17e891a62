//! Tests that measure the whole process (its peak and resident memory, its
//! threads, the watchdog thread's wake-ups) or change it (its umask). Among
//! the tests of `all`, which load routers and call them on other threads
//! all along, the figures would be partly another test's, and the umask
//! would reach another test's files. Here every test takes its turn
//! ([`TURN`]), so that none measures or changes what another one does.

mod cache_umask;
mod host_memory;
mod host_threads;

/// Held by each test of this binary for all it does, loads included.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `test` on a runtime of its own once it is this test's turn (for a
/// `#[test]` that measures across several loads and calls).
fn measuring<F: std::future::Future<Output = ()>>(test: F) {
    let _turn = TURN.blocking_lock();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test);
}
