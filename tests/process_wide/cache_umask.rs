//! The compiled-component cache against another local user who could
//! rewrite a loaded artifact in place: cache files must be the owner's
//! alone, whatever the umask. (The other attacks on the cache: `all`'s
//! `cache.rs`.) This test changes the process's umask, which would reach
//! the files of every test running beside it.

use presence_router_runtime::CompileSource;
use presence_router_tests::cache::{load_example, only_file};
use presence_router_tests::second_user::{
    ATTACKER, as_attacker, mode_of, second_user_available, set_mode, temp_dir_with_mode,
};

use crate::TURN;

// `umask` is in every Linux libc, takes and returns a `mode_t` (u32 on
// Linux) and cannot fail: safe to call.
unsafe extern "C" {
    safe fn umask(mask: u32) -> u32;
}

#[tokio::test]
async fn cache_files_are_private_whatever_the_umask() {
    let _turn = TURN.lock().await;
    if !second_user_available("cache_files_are_private_whatever_the_umask") {
        return;
    }
    // A shared directory of a group the attacker is in (setgid, so that
    // what is created in it gets that group), and a umask for sharing.
    let shared = temp_dir_with_mode(0o755);
    std::os::unix::fs::chown(shared.path(), Some(0), Some(ATTACKER)).expect("chown");
    set_mode(shared.path(), 0o2775);
    let cache = shared.path().join("cache");
    let previous_umask = umask(0o002);
    let first = load_example(&cache).await;
    let second = load_example(&cache).await;
    umask(previous_umask);
    assert_eq!(
        (first, second),
        (CompileSource::Compiled, CompileSource::Cache)
    );

    let mut modes = vec![(cache.clone(), mode_of(&cache) & 0o777, 0o700)];
    for entry in std::fs::read_dir(&cache).expect("read_dir") {
        let path = entry.expect("an entry").path();
        modes.push((path.clone(), mode_of(&path) & 0o777, 0o600));
    }
    assert_eq!(modes.len(), 4, "the directory, key, artifact and MAC");
    for (path, mode, private) in &modes {
        assert_eq!(
            mode,
            private,
            "{} has mode {mode:o}, not {private:o}",
            path.display()
        );
    }
    // The attacker, in the directory's group, cannot open an artifact to
    // rewrite it under a running process.
    let artifact = only_file(&cache, "cwasm");
    let before = std::fs::read(&artifact).expect("read the artifact");
    for file in [&artifact, &only_file(&cache, "mac"), &cache.join("key")] {
        let attempt = as_attacker(r#"exec 3<>"$1""#, &[file.as_os_str()]);
        let stderr = String::from_utf8_lossy(&attempt.stderr);
        assert!(
            !attempt.status.success() && stderr.contains("Permission denied"),
            "uid {ATTACKER} could open {} for writing (EACCES expected): {stderr}",
            file.display()
        );
    }
    assert_eq!(std::fs::read(&artifact).expect("read the artifact"), before);
    assert_eq!(load_example(&cache).await, CompileSource::Cache);
}
