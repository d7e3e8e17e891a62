//! Who signed a component. The signature travels inside it, as the custom
//! section `signature` of the WebAssembly tool conventions (the `wasmsign2`
//! crate's format, so a component signed by the `wasmsign2` tool verifies
//! here and one signed here verifies there): Ed25519 over the SHA-256 of
//! every byte after that section.
//!
//! The check runs on the bytes that are then compiled, before the
//! compiled-component cache is asked: a cached artifact is never a way
//! around it. A refusal says which key was expected and what was found
//! (no signature, contents changed since signing, another key), because
//! "signature invalid" alone leaves an operator guessing which of those to
//! fix.

use std::io::Cursor;
use std::path::PathBuf;

use presence_router_model::TrustedKey;
use presence_router_model::text::escape_control;
use wasmsign2::{Module, PublicKey, PublicKeySet, SecretKey, Section, WSError};

/// Key files are a line or a few: anything far larger is a mistake.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The public keys of a configuration's `trusted_keys`, read.
#[derive(Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<(TrustedKey, PublicKey)>,
}

/// A trusted key file that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {}: {}", escape_control(&path.display().to_string()), escape_control(message))]
pub struct KeyFileError {
    /// `trusted_keys.<name>`.
    pub key: String,
    pub path: PathBuf,
    pub message: String,
}

/// Why a component's signature was refused. Each names the key (or keys)
/// that would have been accepted, as `expected`: "`ops` (keys/ops.pub)",
/// or "one of `a` (...), `b` (...)".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefusal {
    #[error("is not signed; a signature by {expected} is required")]
    Unsigned { expected: String },
    #[error(
        "was changed after it was signed: its contents do not match the hash its signature \
         covers (a signature by {expected} is required)"
    )]
    Changed { expected: String },
    #[error("is signed by {found}, not by {expected} as required")]
    OtherKey { expected: String, found: String },
    #[error("is signed by a key this configuration does not trust{}, not by {expected} as required",
        if key_ids.is_empty() { String::new() } else { format!(" (key id {})", key_ids.join(", ")) })]
    UnknownKey {
        expected: String,
        key_ids: Vec<String>,
    },
    #[error("has a signature that can't be read ({why}); a signature by {expected} is required")]
    Unreadable { expected: String, why: String },
}

impl SignatureRefusal {
    /// Every [`SignatureRefusal::reason`], for metrics.
    pub const REASONS: [&'static str; 5] = [
        "unsigned",
        "changed",
        "other_key",
        "unknown_key",
        "unreadable",
    ];

    /// A word for metrics and logs: one of [`SignatureRefusal::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureRefusal::Unsigned { .. } => "unsigned",
            SignatureRefusal::Changed { .. } => "changed",
            SignatureRefusal::OtherKey { .. } => "other_key",
            SignatureRefusal::UnknownKey { .. } => "unknown_key",
            SignatureRefusal::Unreadable { .. } => "unreadable",
        }
    }
}

impl TrustedKeys {
    /// Reads each key file of `keys`, by the rule for component files
    /// (whoever can replace a trusted key can sign routers).
    pub async fn read(keys: &[TrustedKey]) -> Result<TrustedKeys, KeyFileError> {
        let mut read = Vec::with_capacity(keys.len());
        for key in keys {
            let error = |message: String| KeyFileError {
                key: key.key.clone(),
                path: key.file.clone(),
                message,
            };
            let bytes = crate::component_file::read_trusted_file(&key.file, MAX_KEY_FILE_BYTES)
                .await
                .map_err(|e| error(format!("cannot read the public key: {e}")))?;
            let public = parse_public_key(&bytes).map_err(error)?;
            read.push((key.clone(), public));
        }
        Ok(TrustedKeys { keys: read })
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks that one of the keys named `required` signed `component`;
    /// the name of the one that did, or why not.
    pub fn check(&self, required: &[String], component: &[u8]) -> Result<String, SignatureRefusal> {
        let (wanted, others): (Vec<_>, Vec<_>) = self
            .keys
            .iter()
            .partition(|(key, _)| required.contains(&key.name));
        let expected = describe(&wanted);
        // Before wasmsign2 reads anything: it allocates what a length says
        // before reading it, and checks every signature it is given.
        if let Err(why) = check_shape(component) {
            return Err(SignatureRefusal::Unreadable { expected, why });
        }
        match signers(&wanted, component) {
            Ok(names) => {
                return names
                    .into_iter()
                    .next()
                    .ok_or(SignatureRefusal::Unreadable {
                        expected,
                        why: "no key verified it".to_owned(),
                    });
            }
            Err(WSError::NoSignatures) => return Err(SignatureRefusal::Unsigned { expected }),
            Err(WSError::VerificationFailed) => {}
            Err(e) => {
                return Err(SignatureRefusal::Unreadable {
                    expected,
                    why: e.to_string(),
                });
            }
        }
        // Signed, but by none of the keys wanted: say what was found.
        let signed = match signed_contents(component) {
            Ok(signed) => signed,
            Err(e) => {
                return Err(SignatureRefusal::Unreadable {
                    expected,
                    why: e.to_string(),
                });
            }
        };
        if !signed.hashes.contains(&signed.contents_hash) {
            return Err(SignatureRefusal::Changed { expected });
        }
        if let Ok(names) = signers(&others, component)
            && !names.is_empty()
        {
            let found: Vec<_> = names.iter().map(|name| format!("`{name}`")).collect();
            return Err(SignatureRefusal::OtherKey {
                expected,
                found: found.join(", "),
            });
        }
        Err(SignatureRefusal::UnknownKey {
            expected,
            key_ids: signed.key_ids,
        })
    }
}

/// "`ops` (keys/ops.pub)", or "one of" several such.
fn describe(keys: &[&(TrustedKey, PublicKey)]) -> String {
    let named: Vec<_> = keys
        .iter()
        .map(|(key, _)| {
            format!(
                "`{}` ({})",
                key.name,
                escape_control(&key.file.display().to_string())
            )
        })
        .collect();
    match named.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", named.join(", ")),
    }
}

/// The names of the keys among `keys` whose signature of `component` is
/// valid (none: [`WSError::VerificationFailed`]).
fn signers(keys: &[&(TrustedKey, PublicKey)], component: &[u8]) -> Result<Vec<String>, WSError> {
    if keys.is_empty() {
        // Still tell an unsigned component from a signed one.
        return match signed_contents(component) {
            Ok(_) => Err(WSError::VerificationFailed),
            Err(e) => Err(e),
        };
    }
    let mut set = PublicKeySet::empty();
    for (_, public) in keys {
        // The same key under two names: once is enough.
        let _ = set.insert(public.clone());
    }
    let valid = set.verify(&mut Cursor::new(component), None)?;
    Ok(keys
        .iter()
        .filter(|(_, public)| valid.iter().any(|v| v.pk == public.pk))
        .map(|(key, _)| key.name.clone())
        .collect())
}

/// What a component's signature section says it covers, and what its
/// contents hash to now.
struct SignedContents {
    hashes: Vec<Vec<u8>>,
    contents_hash: Vec<u8>,
    /// The key ids the signatures carry, in hex.
    key_ids: Vec<String>,
}

fn signed_contents(component: &[u8]) -> Result<SignedContents, WSError> {
    let mut reader = Cursor::new(component);
    let header = {
        let mut sections = Module::iterate(Module::init_from_reader(&mut reader)?)?;
        sections.next().ok_or(WSError::NoSignatures)??
    };
    let data = match header {
        Section::Custom(custom) if custom.is_signature_header() => custom.signature_data()?,
        _ => return Err(WSError::NoSignatures),
    };
    // As wasmsign2 verifies: every byte after the signature section.
    let rest = usize::try_from(reader.position())
        .ok()
        .and_then(|at| component.get(at..))
        .ok_or(WSError::ParseError)?;
    use sha2::Digest as _;
    let contents_hash = sha2::Sha256::digest(rest).to_vec();
    let mut hashes = Vec::new();
    let mut key_ids = Vec::new();
    for signed in data.signed_hashes_set {
        hashes.extend(signed.hashes);
        for id in signed.signatures.iter().filter_map(|s| s.key_id.as_ref()) {
            // A few, each cut short: they are the signer's bytes, shown in
            // a message.
            let mut hex: String = id.iter().take(16).map(|b| format!("{b:02x}")).collect();
            if id.len() > 16 {
                hex.push('…');
            }
            if key_ids.len() < 3 && !key_ids.contains(&hex) {
                key_ids.push(hex);
            }
        }
    }
    Ok(SignedContents {
        hashes,
        contents_hash,
        key_ids,
    })
}

/// A public key: OpenSSH's `ssh-ed25519 ...` line, or one of the wasmsign2
/// tool's formats (raw, PEM, DER).
fn parse_public_key(bytes: &[u8]) -> Result<PublicKey, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let parsed = match text {
        Some(text) if text.starts_with("ssh-") => PublicKey::from_openssh(text),
        _ => PublicKey::from_any(bytes),
    };
    parsed.map_err(|e| {
        format!(
            "not an Ed25519 public key ({e}): expected an OpenSSH `ssh-ed25519` line or a key \
             made by the wasmsign2 tool"
        )
    })
}

/// A secret key: OpenSSH's unencrypted `ssh-ed25519` private key (as
/// `ssh-keygen -t ed25519 -N ''` writes it), or one of the wasmsign2
/// tool's formats.
pub fn parse_secret_key(bytes: &[u8]) -> Result<SecretKey, String> {
    let text = std::str::from_utf8(bytes).ok().map(str::trim);
    let parsed = match text {
        Some(text) if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") => {
            SecretKey::from_openssh(text)
        }
        _ => SecretKey::from_any(bytes),
    };
    parsed.map_err(|e| {
        format!(
            "not an Ed25519 secret key ({e}): expected an unencrypted OpenSSH key \
             (`ssh-keygen -t ed25519 -N ''`) or one made by the wasmsign2 tool"
        )
    })
}

/// `component` signed with `key`, its signature embedded (replacing one it
/// had). The result verifies with the `wasmsign2` tool too.
pub fn sign(component: &[u8], key: &SecretKey) -> Result<Vec<u8>, String> {
    check_sections(component)?;
    let module = Module::deserialize(&mut Cursor::new(component))
        .map_err(|e| format!("not a WebAssembly component or module ({e})"))?;
    let signed = key
        .sign(module, None)
        .map_err(|e| format!("cannot sign it: {e}"))?;
    let mut out = Vec::with_capacity(component.len() + 256);
    signed
        .serialize(&mut out)
        .map_err(|e| format!("cannot write the signed component: {e}"))?;
    Ok(out)
}

/// The preamble of a WebAssembly component (a core module's differs in its
/// version and layer bytes). wasmsign2 signs what follows its signature
/// section, not these eight bytes: they are checked here.
const COMPONENT_HEADER: [u8; 8] = *b"\0asm\x0d\0\x01\0";

/// The largest signature section taken: one signature is about 100 bytes,
/// so this leaves room for many, and bounds the work of checking them.
const MAX_SIGNATURE_SECTION: usize = 16 * 1024;
/// Sets of signed hashes, hashes in a set, and signatures, at most.
const MAX_HASH_SETS: u32 = 4;
const MAX_HASHES_PER_SET: u32 = 4;
const MAX_SIGNATURES: u32 = 16;
/// A key id, at most (wasmsign2's own are a few bytes).
const MAX_KEY_ID: usize = 64;

/// Whether `component` is a component whose first section, if it is a
/// signature, has the shape wasmsign2 writes, every length within what is
/// left and every count within the bounds above: wasmsign2 allocates what a
/// length says before it reads the bytes, and checks every signature a
/// section holds, so a few bytes could otherwise ask for gigabytes or for
/// seconds of work.
fn check_shape(component: &[u8]) -> Result<(), String> {
    let rest = component
        .strip_prefix(&COMPONENT_HEADER)
        .ok_or("not a WebAssembly component: its first 8 bytes are not a component's")?;
    let mut at = Bytes(rest);
    if at.0.first() != Some(&0) {
        return Ok(()); // No custom section first: not signed.
    }
    at.byte()?;
    let payload = at.slice(usize::MAX)?;
    let mut section = Bytes(payload);
    if section.slice(usize::MAX)? != b"signature" {
        return Ok(()); // Another custom section first: not signed.
    }
    if payload.len() > MAX_SIGNATURE_SECTION {
        return Err(format!(
            "a signature section of {} bytes, over the {MAX_SIGNATURE_SECTION} allowed",
            payload.len()
        ));
    }
    for _ in 0..3 {
        section.byte()?; // version, content type, hash function
    }
    let mut signatures = 0u32;
    for _ in 0..section.count(MAX_HASH_SETS, "sets of signed hashes")? {
        let mut set = Bytes(section.slice(MAX_SIGNATURE_SECTION)?);
        for _ in 0..set.count(MAX_HASHES_PER_SET, "hashes in a set")? {
            set.take(32)?;
        }
        let count = set.count(MAX_SIGNATURES, "signatures")?;
        signatures += count;
        if signatures > MAX_SIGNATURES {
            return Err(format!("more than {MAX_SIGNATURES} signatures"));
        }
        for _ in 0..count {
            let mut signature = Bytes(set.slice(MAX_SIGNATURE_SECTION)?);
            signature.slice(MAX_KEY_ID)?;
            signature.byte()?; // the algorithm
            signature.slice(MAX_SIGNATURE_SECTION)?;
        }
    }
    Ok(())
}

/// Whether every top-level section of `component` (after its preamble)
/// fits in what is left: wasmsign2's `Module::deserialize` allocates each
/// section's stated size first.
fn check_sections(component: &[u8]) -> Result<(), String> {
    let mut at = Bytes(component.get(8..).ok_or("too short to be WebAssembly")?);
    while !at.0.is_empty() {
        at.byte()?;
        at.slice(usize::MAX)?;
    }
    Ok(())
}

/// A cursor over bytes that refuses to read past their end.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "a length of {n} bytes where {} are left",
                self.0.len()
            ));
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned LEB128 of at most 32 bits, as WebAssembly writes sizes.
    fn leb(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            let bits = u32::from(byte & 0x7f);
            if shift == 28 && bits > 0x0f {
                return Err("a length over 32 bits".to_owned());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a length over 5 bytes".to_owned())
    }

    /// A length-prefixed slice of at most `max` bytes.
    fn slice(&mut self, max: usize) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.leb()?).unwrap_or(usize::MAX);
        if n > max {
            return Err(format!("a length of {n} bytes, over the {max} allowed"));
        }
        self.take(n)
    }

    fn count(&mut self, max: u32, what: &str) -> Result<u32, String> {
        let n = self.leb()?;
        if n > max {
            return Err(format!("{n} {what}, over the {max} allowed"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_section(payload: &[u8]) -> Vec<u8> {
        let mut bytes = COMPONENT_HEADER.to_vec();
        bytes.push(0);
        bytes.push(u8::try_from(payload.len()).expect("short"));
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_anything_is_allocated() {
        // A section that says it is 4 GiB long, in 14 bytes.
        let mut bytes = COMPONENT_HEADER.to_vec();
        bytes.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(check_shape(&bytes).is_err());
        assert!(check_sections(&bytes).is_err());
        // A signature whose key id says the same, inside a small section.
        let mut payload = b"\x09signature\x01\x01\x01\x01".to_vec();
        payload.extend_from_slice(&[7, 0, 1, 4, 0xff, 0xff, 0xff, 0x0f]);
        assert!(check_shape(&with_section(&payload)).is_err());
    }

    #[test]
    fn too_many_signatures_are_refused() {
        let mut set = vec![0u8]; // no hash
        set.push(17); // signatures
        let mut payload = b"\x09signature\x01\x01\x01\x01".to_vec();
        payload.push(u8::try_from(set.len()).expect("short"));
        payload.extend_from_slice(&set);
        assert_eq!(
            check_shape(&with_section(&payload)),
            Err("17 signatures, over the 16 allowed".to_owned())
        );
    }

    #[test]
    fn a_core_module_header_is_refused_and_other_first_sections_are_unsigned() {
        assert!(check_shape(b"\0asm\x01\0\0\0").is_err());
        assert_eq!(check_shape(&COMPONENT_HEADER), Ok(()));
        assert_eq!(check_shape(&with_section(b"\x04name")), Ok(()));
    }
}
