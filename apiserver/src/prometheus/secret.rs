//! Credentials: held in memory (a `MetricsBackend`'s Secret), or a file read again only
//! when it changes.
//!
//! Kubernetes rotates projected tokens and mounted Secrets in place (an atomic symlink
//! swap), so the file must be followed; reading it for every query would cost a file
//! read per HPA request. Its identity (device, inode, size, modification time) is
//! checked instead, one `stat` per query, and the content read when that moved.

use super::config::InlineSecret;
use super::error::{PrometheusConfigError, PrometheusError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
}

pub(super) struct SecretFile {
    path: PathBuf,
    cached: Mutex<Option<(Stamp, String)>>,
    reads: AtomicU64,
}

impl SecretFile {
    pub(super) fn new(path: PathBuf) -> Self {
        SecretFile {
            path,
            cached: Mutex::new(None),
            reads: AtomicU64::new(0),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// How often the file was read.
    #[cfg(test)]
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The trimmed content; errors never include it.
    pub(super) fn get(&self) -> Result<String, PrometheusError> {
        let credentials = |cause: String| PrometheusError::Credentials {
            path: self.path.clone(),
            cause,
        };
        let metadata = std::fs::metadata(&self.path).map_err(|e| credentials(e.to_string()))?;
        let stamp = Stamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, secret)) = cached.as_ref()
            && *seen == stamp
        {
            return Ok(secret.clone());
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let content =
            std::fs::read_to_string(&self.path).map_err(|e| credentials(e.to_string()))?;
        let secret = content.trim();
        if secret.is_empty() {
            *cached = None;
            return Err(credentials("the file is empty".to_owned()));
        }
        *cached = Some((stamp, secret.to_owned()));
        Ok(secret.to_owned())
    }
}

/// A secret read from a file (again when it changes) or held in memory.
pub(super) enum Credential {
    File(SecretFile),
    Inline(String),
}

impl Credential {
    pub(super) fn inline(secret: &InlineSecret) -> Result<Self, PrometheusConfigError> {
        let text = std::str::from_utf8(&secret.value)
            .map(str::trim)
            .map_err(|_| PrometheusConfigError::InvalidSecret {
                what: "credential",
                origin: secret.origin.clone(),
                cause: "not UTF-8 text".to_owned(),
            })?;
        if text.is_empty() {
            return Err(PrometheusConfigError::InvalidSecret {
                what: "credential",
                origin: secret.origin.clone(),
                cause: "empty".to_owned(),
            });
        }
        Ok(Credential::Inline(text.to_owned()))
    }

    /// The trimmed secret; errors never include it.
    pub(super) fn get(&self) -> Result<String, super::PrometheusError> {
        match self {
            Credential::File(file) => file.get(),
            Credential::Inline(secret) => Ok(secret.clone()),
        }
    }

    /// Where it comes from, for messages.
    pub(super) fn origin(&self) -> String {
        match self {
            Credential::File(file) => file.path().display().to_string(),
            Credential::Inline(_) => "the MetricsBackend's Secret".to_owned(),
        }
    }
}
