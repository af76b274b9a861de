//! Cache keys: HMAC-SHA256 under a secret drawn once per process, so neither
//! tokens nor precomputable hashes of them are ever stored, truncated to 128
//! bits (as HMAC-SHA-256-128 of RFC 4868): nobody sees a key, so forging a
//! hit takes about 2^128 / entries guesses, one request each.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// A cache key: HMAC-SHA256 of the length-prefixed parts, its first 128 bits.
pub(crate) type Key = [u8; 16];

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
    ///
    /// # Panics
    ///
    /// When the OS gives no randomness at all (`getrandom` failing): a key
    /// anyone could know would let cache keys be computed offline, so the
    /// process stops, at startup, where every hasher is made.
    pub fn random() -> Self {
        let mut secret = [0u8; 40];
        let drawn = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret);
        assert!(
            drawn.is_ok(),
            "the OS gave no randomness for the cache keys; refusing to run with a known key"
        );
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
    /// Adds one part, prefixed by its length as a LEB128 varint: one byte
    /// for the short parts of a decision key, so a typical one is one
    /// SHA-256 block where fixed 8-byte prefixes made it three.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        let (prefix, n) = varint(bytes.len() as u64);
        self.0.update(&prefix[..n]);
        self.0.update(bytes);
        self
    }

    /// The key.
    pub fn finish(self) -> Key {
        let mut key = Key::default();
        let n = key.len();
        key.copy_from_slice(&self.0.finalize().into_bytes()[..n]);
        key
    }
}

/// `n` as a LEB128 varint: seven bits a byte, low bits first, the high bit
/// set on every byte but the last (prefix-free, so parts never run into each
/// other). The bytes and how many of them there are.
fn varint(mut n: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut len = 0;
    loop {
        // Truncation intended: the low seven bits.
        let low = (n & 0x7f) as u8;
        n >>= 7;
        out[len] = low | if n == 0 { 0 } else { 0x80 };
        len += 1;
        if n == 0 {
            return (out, len);
        }
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
        // as one `write` of 16 bytes.
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128_varints() {
        let enc = |n| {
            let (b, len) = varint(n);
            b[..len].to_vec()
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(1), [0x01]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(enc(16 * 1024), [0x80, 0x80, 0x01]);
        assert_eq!(enc(u64::MAX).len(), 10);
        assert_eq!(enc(u64::MAX)[9], 0x01);
    }

    #[test]
    fn empty_and_long_parts_stay_apart() {
        let h = KeyHasher::random();
        let long = vec![b'x'; 200];
        let cases: [&[&[u8]]; 5] = [
            &[b"abc"],
            &[b"", b"abc"],
            &[b"abc", b""],
            &[&long],
            &[&long, b""],
        ];
        let keys: Vec<Key> = cases.iter().map(|parts| h.key(parts)).collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
