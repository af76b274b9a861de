//! Cache keys: HMAC-SHA256 under a secret drawn once per process, so neither
//! tokens nor precomputable hashes of them are ever stored.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A cache key: HMAC-SHA256 of the length-prefixed parts.
pub(crate) type Key = [u8; 32];

/// Derives cache keys under a secret drawn once per process.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
    /// Tells hashers apart, so a digest memo of one is never used by another.
    id: u64,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher([REDACTED])")
    }
}

impl KeyHasher {
    /// A hasher with a fresh random key.
    pub fn random() -> Self {
        let mut secret = [0u8; 40];
        // SystemRandom only fails when the OS has no entropy source at all;
        // a zero key would still not store raw tokens.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        let (key, id) = secret.split_at(32);
        let mut id_bytes = [0u8; 8];
        id_bytes.copy_from_slice(id);
        Self {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!()),
            id: u64::from_le_bytes(id_bytes),
        }
    }

    /// The hasher's id (not secret; tells digests of hashers apart).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// HMAC over each part prefixed by its length, so `("ab", "c")` and
    /// `("a", "bc")` differ.
    pub fn key(&self, parts: &[&[u8]]) -> Key {
        let mut b = self.builder();
        for p in parts {
            b.part(p);
        }
        b.finish()
    }

    /// Starts a key to be fed part by part.
    pub fn builder(&self) -> KeyBuilder {
        KeyBuilder(self.mac.clone())
    }
}

/// A key being built; see [`KeyHasher::key`].
pub struct KeyBuilder(Hmac<Sha256>);

impl KeyBuilder {
    /// Adds one length-prefixed part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// The key.
    pub fn finish(self) -> Key {
        self.0.finalize().into_bytes().into()
    }
}

/// Hashes a [`Key`] for the store's table by taking its first bytes: keys
/// are already uniform under a secret, so nothing can aim at a bucket.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyBits;

impl std::hash::BuildHasher for KeyBits {
    type Hasher = KeyBitsHasher;

    fn build_hasher(&self) -> KeyBitsHasher {
        KeyBitsHasher(0)
    }
}

/// See [`KeyBits`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyBitsHasher(u64);

impl std::hash::Hasher for KeyBitsHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The array's length prefix comes as `write_usize`; the key itself
        // as one `write` of 32 bytes.
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _: usize) {}
}
