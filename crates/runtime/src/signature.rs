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
#[error("{key}: {}: {message}", escape_control(&path.display().to_string()))]
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
        key_ids.extend(
            signed
                .signatures
                .iter()
                .filter_map(|s| s.key_id.as_ref())
                .map(|id| id.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        );
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
