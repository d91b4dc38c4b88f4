//! Pure: the device and peer configuration model that both the UAPI and the `[wg]` TOML
//! section map into, with key parsing in the two encodings WireGuard uses (hex, base64).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ipnet::IpNet;

/// Errors of key parsing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The text is not 64 hex digits.
    #[error("key is not 64 hex digits")]
    ParseHex,
    /// The text is not 44 characters of base64 encoding 32 bytes.
    #[error("key is not 32 bytes of base64")]
    ParseBase64,
}

/// A 32-byte WireGuard key (public, private or preshared).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// Parses the 64-hex-digit form used by the UAPI.
    pub fn from_hex(s: &str) -> Result<Key, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| KeyError::ParseHex)?;
        Ok(Key(out))
    }

    /// Parses the base64 form used by `wg` and configuration files.
    pub fn from_base64(s: &str) -> Result<Key, KeyError> {
        let v = B64.decode(s.trim()).map_err(|_| KeyError::ParseBase64)?;
        let arr: [u8; 32] = v.try_into().map_err(|_| KeyError::ParseBase64)?;
        Ok(Key(arr))
    }

    /// Returns the lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Returns the base64 form.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    /// True when every byte is zero (the UAPI's way of saying "no key").
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }

    /// Derives the public key of this private key (Curve25519 with clamping).
    pub fn public_from_private(&self) -> Key {
        let secret = boringtun::x25519::StaticSecret::from(self.0);
        Key(boringtun::x25519::PublicKey::from(&secret).to_bytes())
    }
}

impl fmt::Debug for Key {
    /// Shows only a short prefix so that secrets never reach logs in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}…)", &self.to_base64()[..6])
    }
}

/// A secret key whose `Debug` never reveals it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct SecretKey(pub Key);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// The configuration of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerConfig {
    /// Optional human name (from the TOML file; UAPI peers have none).
    pub name: Option<String>,
    /// The peer's public key.
    pub public_key: Key,
    /// Optional preshared key mixed into the handshake.
    pub preshared_key: Option<SecretKey>,
    /// The configured endpoint (roaming may move the live one).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Networks routed to, and accepted from, this peer.
    pub allowed_ips: Vec<IpNet>,
}

/// The configuration of the whole device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceConfig {
    /// The interface's private key (None until set).
    pub private_key: Option<SecretKey>,
    /// UDP listen port (0 = pick one).
    pub listen_port: u16,
    /// fwmark set on the UDP sockets (0 = none).
    pub fwmark: u32,
    /// Peers keyed by public key.
    pub peers: BTreeMap<Key, PeerConfig>,
}

impl DeviceConfig {
    /// The interface's public key, if a private key is set.
    pub fn public_key(&self) -> Option<Key> {
        self.private_key.map(|k| k.0.public_from_private())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base64_round_trip() {
        let k = Key([7u8; 32]);
        assert_eq!(Key::from_hex(&k.to_hex()), Ok(k));
        assert_eq!(Key::from_base64(&k.to_base64()), Ok(k));
        assert_eq!(Key::from_hex("abc"), Err(KeyError::ParseHex));
        assert_eq!(Key::from_base64("AAAA"), Err(KeyError::ParseBase64));
    }

    #[test]
    fn public_key_matches_rfc7748_vector() {
        // RFC 7748 §6.1 Alice's private and public key.
        let private =
            Key::from_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap();
        assert_eq!(
            private.public_from_private().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let s = SecretKey(Key([1u8; 32]));
        assert!(!format!("{s:?}").contains("AQEB"));
    }
}
