//! Validation of Matrix user IDs that come out of a guest.
//!
//! The grammar is the Matrix specification's (appendices, "User
//! Identifiers" and "Server Name"): `@localpart:server_name`, at most 255
//! bytes. Localparts are checked against the *historical* grammar (any
//! printable ASCII but `:`), because user IDs from federation predate the
//! stricter one and routers must be able to name those users.

/// The specification's limit on a whole user ID, in bytes.
pub const MAX_USER_ID_LEN: usize = 255;

/// Checks that `id` is a Matrix user ID; the error says what is wrong with it.
pub fn validate_user_id(id: &str) -> Result<(), String> {
    // Every user ID of every answer is checked, on every call: the common
    // shape is accepted in one pass over the bytes, and only the rest (IPv6
    // literals, and everything wrong) takes the path that says what is wrong.
    if id.len() <= MAX_USER_ID_LEN && is_plain_user_id(id.as_bytes()) {
        return Ok(());
    }
    validate_user_id_slowly(id)
}

/// `@localpart:host[:port]` with a DNS name or IPv4 host: a subset of what
/// [`validate_user_id_slowly`] accepts, so the two never disagree on a yes.
/// One pass over the bytes, each looked up once: it runs for every user of
/// every answer.
fn is_plain_user_id(id: &[u8]) -> bool {
    let [b'@', rest @ ..] = id else {
        return false;
    };
    let mut bytes = rest.iter();
    let mut localpart = 0;
    loop {
        match bytes.next() {
            Some(b':') => break,
            Some(&b) if BYTE_CLASSES[b as usize] & LOCALPART != 0 => localpart += 1,
            _ => return false,
        }
    }
    let mut host = 0;
    loop {
        match bytes.next() {
            None => return localpart > 0 && host > 0,
            Some(b':') => break,
            Some(&b) if BYTE_CLASSES[b as usize] & HOST != 0 => host += 1,
            _ => return false,
        }
    }
    let port = bytes.as_slice();
    localpart > 0
        && host > 0
        && (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
}

/// A byte of a historical localpart: printable ASCII.
const LOCALPART: u8 = 1;
/// A byte of a DNS name or IPv4 address: alphanumeric, `-` or `.`.
const HOST: u8 = 2;

/// What each byte may be in [`is_plain_user_id`]'s grammar.
static BYTE_CLASSES: [u8; 256] = {
    let mut classes = [0; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if byte >= 0x21 && byte <= 0x7e {
            classes[b] |= LOCALPART;
        }
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.' {
            classes[b] |= HOST;
        }
        b += 1;
    }
    classes
};

fn validate_user_id_slowly(id: &str) -> Result<(), String> {
    if id.len() > MAX_USER_ID_LEN {
        return Err(format!(
            "user ID of {} bytes is longer than the {MAX_USER_ID_LEN} the Matrix spec allows",
            id.len()
        ));
    }
    let Some(rest) = id.strip_prefix('@') else {
        return Err(format!("{} does not start with `@`", quoted(id)));
    };
    let Some((localpart, server_name)) = rest.split_once(':') else {
        return Err(format!("{} has no `:server` part", quoted(id)));
    };
    if localpart.is_empty() {
        return Err(format!("{} has an empty localpart", quoted(id)));
    }
    if let Some(bad) = localpart.chars().find(|c| !matches!(c, '\x21'..='\x7e')) {
        return Err(format!(
            "{} has {:?} in its localpart (only printable ASCII is allowed)",
            quoted(id),
            bad
        ));
    }
    validate_server_name(server_name).map_err(|why| format!("{}: {why}", quoted(id)))
}

/// `hostname [ ":" port ]`, where hostname is an IPv4 address, a bracketed
/// IPv6 address or a DNS name.
fn validate_server_name(server_name: &str) -> Result<(), String> {
    if server_name.is_empty() {
        return Err("the server name is empty".into());
    }
    let (host, port) = if let Some(v6_and_rest) = server_name.strip_prefix('[') {
        let Some((v6, rest)) = v6_and_rest.split_once(']') else {
            return Err("the IPv6 address has no closing `]`".into());
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{} is not an IPv6 address",
                quoted(&format!("[{v6}]"))
            ));
        }
        match rest {
            "" => return Ok(()),
            _ => match rest.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("unexpected text after the IPv6 address".into()),
            },
        }
    } else {
        match server_name.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(server_name), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the server name is empty".into());
        }
        if let Some(bad) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.')))
        {
            return Err(format!("the server name has {bad:?} in it"));
        }
    }
    if let Some(port) = port {
        let digits_only = port.bytes().all(|b| b.is_ascii_digit());
        if port.is_empty() || port.len() > 5 || !digits_only {
            return Err(format!("{} is not a port number", quoted(port)));
        }
    }
    Ok(())
}

/// Quotes an ID for an error message, escaping control characters and
/// shortening what would flood a log line.
fn quoted(id: &str) -> String {
    const SHOWN: usize = 64;
    let mut shown: String = id.chars().take(SHOWN).collect();
    if shown.len() < id.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::{is_plain_user_id, validate_user_id, validate_user_id_slowly};

    #[test]
    fn the_fast_path_never_accepts_what_the_full_check_refuses() {
        let pieces = [
            "", "@", ":", "a", "é", " ", "[", "]", "::1", "8448", "123456", ".", "-", "\u{7}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let id = format!("{a}{b}{c}{d}");
                        if is_plain_user_id(id.as_bytes()) {
                            assert_eq!(validate_user_id_slowly(&id), Ok(()), "{id:?}");
                        }
                    }
                }
            }
        }
        assert!(is_plain_user_id(b"@alice:example.com:8448"));
    }

    #[test]
    fn accepts_real_user_ids() {
        for id in [
            "@alice:example.com",
            "@alice:example.com:8448",
            "@a:x",
            "@_bridge.bot=1/+x:matrix.org",
            "@Historical!User:example.org",
            "@alice:1.2.3.4",
            "@alice:[::1]",
            "@alice:[2001:db8::1]:8448",
            "@far_away_person:island",
        ] {
            assert_eq!(validate_user_id(id), Ok(()), "{id}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_user_id_and_says_why() {
        let long = format!("@{}:example.com", "a".repeat(300));
        let cases: &[(&str, &str)] = &[
            ("alice", "does not start with `@`"),
            ("@alice", "has no `:server` part"),
            ("@:x", "empty localpart"),
            ("@a:", "server name is empty"),
            ("@a:b:", "is not a port number"),
            ("@a:b:123456", "is not a port number"),
            ("@a b:x", "' ' in its localpart"),
            ("@a\u{7}:x", "'\\u{7}' in its localpart"),
            ("@a:exa mple.com", "has ' ' in it"),
            ("@a:[::1", "no closing `]`"),
            ("@a:[zz]", "is not an IPv6 address"),
            (
                "@a:h:\u{1b}[2J\nFORGED",
                "\\u{1b}[2J\\nFORGED\" is not a port number",
            ),
            ("@a:[\r\u{9b}]", "\\r\\u{9b}]\" is not an IPv6 address"),
            ("@é:x", "'é' in its localpart"),
            (&long, "longer than the 255"),
        ];
        for (id, expected) in cases {
            let err = validate_user_id(id).expect_err(id);
            assert!(err.contains(expected), "{id:?}: {err}");
        }
    }
}
