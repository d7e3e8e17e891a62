//! How a Rust homeserver embeds the runtime: implement `ModuleApi`, load the
//! routers named in a YAML configuration, and route each presence batch.
//!
//! Run: `cargo run -p presence-router-runtime --example embed -- examples/config.yaml`
//! (after `scripts/example.sh` has built the example router).

use std::sync::Arc;

use presence_router_runtime::{
    InterestedUsers, ModuleApi, Presence, RouterFailure, RouterSet, UserPresenceState,
};

/// The homeserver's side of the routers' `module-api`.
struct Homeserver;

impl ModuleApi for Homeserver {
    fn send_local_online_presence_to(&self, router: &str, users: &[String]) {
        // A real homeserver queues a push of its local users' online
        // presence to these users; it is called after the router returned.
        println!("[{router}] push local online presence to {users:?}");
    }

    fn router_skipped(&self, failure: &RouterFailure) {
        eprintln!("warning: {failure}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/config.yaml".into());
    // Compiles each component, checks it against the presence-router world
    // and runs its parse-config: any failure here is a start-up error.
    let routers = RouterSet::load_file(&config, Arc::new(Homeserver)).await?;

    // One call per batch, however many routers: the answers are merged.
    let batch = vec![
        UserPresenceState::new("@bob:example.com", Presence::Online),
        UserPresenceState::new("@carol:remote.org", Presence::Busy),
    ];
    let routed = routers.get_users_for_states(&batch).await;
    for (user, indices) in &routed.answer {
        // Indices point into *our* batch: hand out our own state objects.
        let states: Vec<&str> = indices
            .iter()
            .map(|&i| batch[i as usize].user_id.as_str())
            .collect();
        println!("{user} also receives the presence of {states:?}");
    }

    // A syncing local user: whose presence should they see beyond room-mates?
    match routers
        .get_interested_users("@alice:example.com")
        .await
        .answer
    {
        InterestedUsers::All => println!("@alice:example.com sees everyone's presence"),
        InterestedUsers::Users(users) => println!("@alice:example.com also sees {users:?}"),
    }
    Ok(())
}
