//! Hostile guest: looks for a way out of the sandbox (files, environment, arguments, sockets, stdin) and reports what it found, one `log` line each.

wit_bindgen::generate!({ path: "../../../wit", world: "presence-router" });

struct Hostile;

use std::io::Read;

use matrix::presence_router::module_api::{self, LogLevel};

fn report(what: &str, found: String) {
    module_api::log(LogLevel::Info, &format!("{what}: {found}"));
}

impl Guest for Hostile {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn get_users_for_states(_states: Vec<UserPresenceState>) -> Vec<Route> {
        report(
            "file",
            format!(
                "{:?}",
                std::fs::read_to_string("/etc/passwd")
                    .map(|s| s.len())
                    .map_err(|e| e.kind())
            ),
        );
        report(
            "dir",
            format!(
                "{:?}",
                std::fs::read_dir(".")
                    .map(|d| d.count())
                    .map_err(|e| e.kind())
            ),
        );
        report("env", format!("{:?}", std::env::vars().collect::<Vec<_>>()));
        report(
            "args",
            format!("{:?}", std::env::args().collect::<Vec<_>>()),
        );
        report(
            "tcp",
            format!(
                "{:?}",
                std::net::TcpStream::connect("127.0.0.1:22")
                    .map(|_| "connected")
                    .map_err(|e| e.kind())
            ),
        );
        report(
            "udp",
            format!(
                "{:?}",
                std::net::UdpSocket::bind("127.0.0.1:0")
                    .map(|_| "bound")
                    .map_err(|e| e.kind())
            ),
        );
        let mut stdin = Vec::new();
        report(
            "stdin",
            format!(
                "{:?}",
                std::io::stdin()
                    .read_to_end(&mut stdin)
                    .map_err(|e| e.kind())
            ),
        );
        vec![Route {
            user_id: "@snoop:example.com".into(),
            states: Vec::new(),
        }]
    }

    fn get_interested_users(_user_id: String) -> InterestedUsers {
        InterestedUsers::Users(Vec::new())
    }
}

export!(Hostile);
