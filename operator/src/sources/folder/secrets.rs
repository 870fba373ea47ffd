//! Standalone mode's Secrets: a folder laid out as Secrets mounted as volumes are,
//! `<dir>/<secret name>/<key>`, read when a backend is built and again when
//! [`Backends::refresh_secrets`](metrics_registry_apiserver::upstream::Backends::refresh_secrets)
//! asks (the folder source does with every rescan).
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use metrics_registry_apiserver::prometheus::InlineSecret;
use metrics_registry_apiserver::table::SecretRef;
use metrics_registry_apiserver::upstream::SecretStore;
use std::path::{Component, Path, PathBuf};

pub struct FolderSecrets {
    pub dir: PathBuf,
}

/// A name or key that is one plain path component (no `..`, no `/`): a definition
/// cannot make the server read files outside the folder.
fn component(text: &str) -> bool {
    let mut components = Path::new(text).components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    ) && !text.contains('/')
}

impl SecretStore for FolderSecrets {
    fn value(&self, secret: &SecretRef) -> Result<InlineSecret, String> {
        if !component(&secret.name) || !component(&secret.key) {
            return Err(format!(
                "Secret {:?} key {:?}: a name and a key are single path components",
                secret.name, secret.key
            ));
        }
        let path = self.dir.join(&secret.name).join(&secret.key);
        let value = std::fs::read(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Ok(InlineSecret {
            origin: path.display().to_string(),
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_and_nothing_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("auth")).unwrap();
        std::fs::write(dir.path().join("auth/token"), "t0ken\n").unwrap();
        std::fs::write(dir.path().join("outside"), "no").unwrap();
        let store = FolderSecrets {
            dir: dir.path().to_path_buf(),
        };
        let secret = |name: &str, key: &str| SecretRef {
            name: name.into(),
            key: key.into(),
        };
        assert_eq!(
            store.value(&secret("auth", "token")).unwrap().value,
            b"t0ken\n"
        );
        assert!(
            store
                .value(&secret("auth", "nope"))
                .unwrap_err()
                .contains("cannot read")
        );
        for (name, key) in [
            ("..", "outside"),
            ("auth", "../outside"),
            ("/etc", "passwd"),
        ] {
            let error = store.value(&secret(name, key)).unwrap_err();
            assert!(
                error.contains("single path components"),
                "{name}/{key}: {error}"
            );
        }
    }
}
