//! App secrets, encrypted at rest: each value is sealed with XChaCha20-Poly1305 under the control
//! plane's key (`<data_dir>/secrets.key`, 32 random bytes made on first start, mode 0600), with a
//! random nonce per value and the app and name as associated data (a sealed value copied to another
//! app or name does not open). The database holds nonce, ciphertext and a digest; values leave the
//! control plane only to host agents (`GET /internal/v1/apps/{app}/secrets`), which inject them into
//! a machine's environment when it starts.

use crate::error::ControlPlaneError;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

/// The most secrets an app may have, and the largest value.
pub(crate) const MAX_SECRETS: usize = 200;
pub(crate) const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A value as stored: hex nonce and ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: String,
    pub ciphertext: String,
}

/// The control plane's secrets key.
pub(crate) struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// Reads `path`, or makes it (32 random bytes, 0600) when it does not exist and nothing was
    /// sealed yet. With `sealed` values in the database (secrets, volume keys), a missing key is an
    /// error that says to restore it: a new key would leave every one of them unreadable.
    pub(crate) fn load_or_create(path: &Path, sealed: u64) -> Result<SecretBox, ControlPlaneError> {
        let io =
            |e: std::io::Error| ControlPlaneError::SecretsKey(path.to_path_buf(), e.to_string());
        let key = match fs::read(path) {
            Ok(key) => key,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && sealed > 0 => {
                return Err(ControlPlaneError::SecretsKey(
                    path.to_path_buf(),
                    format!(
                        "it is missing, and the database holds {sealed} values sealed with it (app \
                         secrets, volume keys): restore secrets.key from a backup of this data dir \
                         before starting; a new key would make every one of them unreadable"
                    ),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|e| io(std::io::Error::other(e.to_string())))?;
                aloft_durable::write(path, &key, 0o600).map_err(io)?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| {
            ControlPlaneError::SecretsKey(
                path.to_path_buf(),
                format!(
                    "{} bytes, not 32: restore the file from a backup",
                    key.len()
                ),
            )
        })?;
        Ok(SecretBox { cipher })
    }

    pub(crate) fn seal(&self, app: &str, name: &str, value: &str) -> Sealed {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let aad = format!("{app}/{name}");
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("sealing cannot fail for values of bounded size");
        Sealed {
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(ciphertext),
        }
    }

    /// The value, or `None` when it does not open (another key, or tampered with).
    pub(crate) fn open(&self, app: &str, name: &str, sealed: &Sealed) -> Option<String> {
        let nonce = hex::decode(&sealed.nonce).ok().filter(|n| n.len() == 24)?;
        let ciphertext = hex::decode(&sealed.ciphertext).ok()?;
        let aad = format!("{app}/{name}");
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// What `secrets list` shows instead of a value: the first 16 hex digits of its SHA-256.
pub(crate) fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))[..16].to_string()
}

/// Why `name` cannot be a secret's name, if it cannot.
pub(crate) fn name_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Some(format!(
            "`{name}` is not an environment variable name: use letters, digits and `_`, not starting with a digit (e.g. DATABASE_URL)"
        ));
    }
    if ["FLY_", "ALOFT_"].iter().any(|p| name.starts_with(p)) {
        return Some(format!(
            "`{name}`: names starting with FLY_ or ALOFT_ are the platform's"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_open_only_for_their_app_and_name_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let b = SecretBox::load_or_create(&path, 0).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = b.seal("hello", "DATABASE_URL", "postgres://x");
        assert!(!sealed.ciphertext.contains(&hex::encode("postgres")));
        assert_eq!(
            b.open("hello", "DATABASE_URL", &sealed).as_deref(),
            Some("postgres://x")
        );
        assert_eq!(b.open("other", "DATABASE_URL", &sealed), None);
        assert_eq!(b.open("hello", "OTHER", &sealed), None);
        // The same key file again opens it; another key does not.
        let again = SecretBox::load_or_create(&path, 1).unwrap();
        assert!(again.open("hello", "DATABASE_URL", &sealed).is_some());
        let other = SecretBox::load_or_create(&dir.path().join("other.key"), 0).unwrap();
        assert_eq!(other.open("hello", "DATABASE_URL", &sealed), None);
        fs::write(&path, b"short").unwrap();
        let err = SecretBox::load_or_create(&path, 0)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not 32"), "{err}");
    }

    /// A lost key is not replaced while values sealed with it exist: the control plane refuses
    /// to start and says to restore it (a new key would silently make them unreadable).
    #[test]
    fn a_missing_key_is_not_replaced_while_sealed_values_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let err = SecretBox::load_or_create(&path, 3)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("restore secrets.key"), "{err}");
        assert!(err.contains("3 values"), "{err}");
        assert!(!path.exists(), "no new key was written");
        assert!(SecretBox::load_or_create(&path, 0).is_ok());
        assert!(path.exists());
    }

    #[test]
    fn names_are_environment_variables_not_the_platforms() {
        assert_eq!(name_problem("DATABASE_URL"), None);
        assert_eq!(name_problem("_x1"), None);
        for bad in ["", "1X", "A-B", "A B", "FLY_REGION", "ALOFT_X"] {
            assert!(name_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(digest("x").len(), 16);
        assert_ne!(digest("x"), digest("y"));
    }
}
