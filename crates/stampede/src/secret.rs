//! Secrets a fresh install needs without configuration: the JWT secret
//! (`jwt-secret`), the payment webhook secret (`payment-webhook-secret`) and
//! the key sealing webhook signing secrets (`webhook-secret-key`).
//! Each comes from its setting if set, else from the data directory — created
//! with 32 random bytes on first start, readable by the owner only — so
//! `stampede token --data-dir` signs tokens the server accepts.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::config::Secret;

/// The JWT secret's file.
pub const JWT: &str = "jwt-secret";
/// The payment webhook secret's file.
pub const PAYMENT_WEBHOOK: &str = "payment-webhook-secret";
/// The file of the key that seals webhook signing secrets.
pub const WEBHOOK_KEY: &str = "webhook-secret-key";

pub fn path_in(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join(name)
}

fn read(path: &Path) -> anyhow::Result<Secret> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        bail!(
            "{} is empty; delete it to have a new secret generated",
            path.display()
        );
    }
    Ok(Secret::new(text.to_owned()))
}

/// Creates `data_dir` (and missing parents) for the owner only (0700): it
/// holds the secrets and the database. An existing directory others may
/// enter is left as the operator made it, with a warning.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let mode = std::fs::metadata(data_dir)
        .with_context(|| format!("reading data directory {}", data_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %data_dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory is open to other users; chmod 700 it"
        );
    }
    Ok(())
}

/// The secret `name` kept in `data_dir`, created if there is none yet.
pub fn load_or_create(data_dir: &Path, name: &str) -> anyhow::Result<Secret> {
    let path = path_in(data_dir, name);
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("reading randomness: {e}"))?;
    let fresh: String = random.iter().map(|b| format!("{b:02x}")).collect();
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            file.write_all(fresh.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a secret");
            Ok(Secret::new(fresh))
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => read(&path),
        Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
    }
}

/// The JWT secret kept in `data_dir`, which must exist.
pub fn load_existing(data_dir: &Path) -> anyhow::Result<Secret> {
    let path = path_in(data_dir, JWT);
    if !path.exists() {
        bail!(
            "no JWT secret: set STAMPEDE_JWT_SECRET, or point --data-dir at the data directory of \
             a `stampede serve` that has started once ({} does not exist)",
            path.display()
        );
    }
    read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_we_create_is_the_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("a").join("stampede-data");
        prepare_data_dir(&data_dir).unwrap();
        let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        prepare_data_dir(&data_dir).unwrap();
    }

    #[test]
    fn a_generated_secret_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), JWT).unwrap();
        let second = load_or_create(dir.path(), JWT).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(path_in(dir.path(), JWT))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_existing(dir.path()).unwrap(), first);
    }

    #[test]
    fn signing_without_any_secret_explains_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let message = load_existing(dir.path()).unwrap_err().to_string();
        assert!(message.contains("STAMPEDE_JWT_SECRET"), "{message}");
    }
}
