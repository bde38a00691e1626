//! WireGuard keys in WireGuard's own text form (base64 of 32 bytes), as `wg genkey`
//! and `wg pubkey` read and write them, and the private key file with its mode check.
//!
//! This module owns turning key text into key material and refusing key files that
//! others can read. It never logs or prints a private key except where asked to
//! (`scd genkey`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A key that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not base64 of exactly 32 bytes.
    #[error("not a WireGuard key (expected 44 characters of base64 encoding 32 bytes)")]
    BadText,
    /// The key file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file can be read by other users.
    #[error(
        "{path}: private key is readable by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

/// Decodes a key from WireGuard's base64 text.
pub fn decode(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| KeyError::BadText)?;
    bytes.try_into().map_err(|_| KeyError::BadText)
}

/// Encodes a key as WireGuard's base64 text.
pub fn encode(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// A new private key, clamped for Curve25519 exactly as `wg genkey` does.
pub fn generate_private() -> std::io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    let mut filled = 0;
    while filled < key.len() {
        // SAFETY: writes at most the remaining bytes of `key`, which is live.
        let n =
            unsafe { libc::getrandom(key[filled..].as_mut_ptr().cast(), key.len() - filled, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        filled += n.unsigned_abs();
    }
    key[0] &= 248;
    key[31] &= 127;
    key[31] |= 64;
    Ok(key)
}

/// The public key of a private key.
pub fn public_of(private: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_private_file(path: &Path) -> Result<StaticSecret, KeyError> {
    let shown = path.display().to_string();
    let io = |source| KeyError::Io {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path: shown, mode });
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok(StaticSecret::from(decode(&text)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_a_known_pair() {
        // RFC 7748 §6.1: Alice's private and public keys.
        let private: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public = public_of(&private);
        assert_eq!(
            encode(&public),
            "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
        );
        assert_eq!(decode(&encode(&private)).unwrap(), private);
        assert!(decode("too short").is_err());
        assert!(decode(&STANDARD.encode([0u8; 31])).is_err());
    }

    #[test]
    fn generated_keys_are_clamped() {
        let k = generate_private().unwrap();
        assert_eq!(k[0] & 7, 0);
        assert_eq!(k[31] & 0xc0, 0x40);
        assert_ne!(generate_private().unwrap(), k);
    }

    #[test]
    fn refuses_a_readable_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, encode(&generate_private().unwrap())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_private_file(&path),
            Err(KeyError::TooOpen { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_private_file(&path).is_ok());
    }
}
