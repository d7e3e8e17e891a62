//! `presence-router sign` and `verify`: a component's signature, embedded
//! in it in the `wasmsign2` tool's format, so that either tool checks what
//! the other signed. Configurations require signatures with
//! `trusted_keys`, `signed_by` and `require_signatures`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use presence_router_runtime::{TrustedKey, TrustedKeys, parse_secret_key, sign as sign_bytes};

#[derive(clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    component: ComponentArg,
    /// The Ed25519 secret key: an unencrypted OpenSSH key (`ssh-keygen -t
    /// ed25519 -N ''`) or one the wasmsign2 tool made.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Where to write the signed component (default: replace COMPONENT).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    component: ComponentArg,
    /// The Ed25519 public key it must be signed by: an OpenSSH
    /// `ssh-ed25519` line or one the wasmsign2 tool made.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
}

/// The component, as `COMPONENT` or `--component COMPONENT`.
#[derive(clap::Args)]
struct ComponentArg {
    /// The component (.wasm).
    #[arg(
        value_name = "COMPONENT",
        required_unless_present = "component_flag",
        conflicts_with = "component_flag"
    )]
    component: Option<PathBuf>,
    /// The component, named by an option instead.
    #[arg(long = "component", id = "component_flag", value_name = "FILE")]
    component_flag: Option<PathBuf>,
}

impl ComponentArg {
    fn path(&self) -> &Path {
        // clap requires one of the two.
        self.component
            .as_deref()
            .or(self.component_flag.as_deref())
            .unwrap_or(Path::new(""))
    }
}

/// Secret keys are a few lines.
const MAX_SECRET_KEY_BYTES: u64 = 64 * 1024;

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let key_bytes = read_bounded(&args.key, MAX_SECRET_KEY_BYTES)
        .with_context(|| format!("cannot read the secret key {}", args.key.display()))?;
    let key = parse_secret_key(&key_bytes)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", args.key.display()))?;
    let component = std::fs::read(args.component.path())
        .with_context(|| format!("cannot read {}", args.component.path().display()))?;
    let signed = sign_bytes(&component, &key)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("{}", args.component.path().display()))?;
    let output = args.output.as_deref().unwrap_or(args.component.path());
    write_replacing(output, &signed)
        .with_context(|| format!("cannot write {}", output.display()))?;
    println!("{}: signed with {}", output.display(), args.key.display());
    Ok(())
}

pub async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    // Named as the configuration would name it: by its file's stem.
    let name = args.key.file_stem().map_or_else(
        || "key".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    let keys = TrustedKeys::read(&[TrustedKey {
        name: name.clone(),
        file: args.key.clone(),
        key: "--key".to_owned(),
    }])
    .await?;
    let component = std::fs::read(args.component.path())
        .with_context(|| format!("cannot read {}", args.component.path().display()))?;
    match keys.check(&[name], &component) {
        Ok(_) => {
            println!(
                "{}: signed by {}",
                args.component.path().display(),
                args.key.display()
            );
            Ok(())
        }
        Err(refusal) => Err(anyhow::anyhow!(
            "{}: {refusal}",
            args.component.path().display()
        )),
    }
}

/// The file at `path`, if it holds at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("more than {max} bytes: not a key"),
        ));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file beside it, renamed
/// over it: a router set reloading `path` meanwhile reads the old file or
/// the new one, never half of one. The file keeps the mode of the one it
/// replaces (a new one gets 0644 less the umask).
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::NamedTempFile::new_in(dir)?;
    temporary.write_all(bytes)?;
    temporary.as_file().sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = match std::fs::metadata(path) {
            Ok(metadata) => metadata.permissions().mode() & 0o777,
            Err(_) => {
                // What a plain create would give: 0666 less the umask, and
                // never writable by others (the runtime refuses that).
                0o644
            }
        };
        temporary
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    temporary.persist(path).map_err(|e| e.error)?;
    Ok(())
}
