//! The stable key hash.
//!
//! Key groups must not change between processes, versions or machines, or a restored
//! savepoint would put keys on the wrong subtask. `std`'s `DefaultHasher` makes no such
//! promise, so keys are hashed with [`StableHasher`]:
//!
//! - every integer `write_*` is widened to a `u64` (sign-extended for signed types) and
//!   mixed as one word; byte slices are mixed 8 bytes at a time (little-endian, the last
//!   word zero-padded), followed by their length;
//! - mixing a word `w` into the state `h`: `h = (h.rotate_left(5) ^ w) * 0x517cc1b727220a95`
//!   (wrapping);
//! - `finish` applies MurmurHash3's 64-bit finaliser (`fmix64`).
//!
//! `str` hashes as its bytes followed by `write_u8(0xff)`, tuples field by field, as
//! `std`'s `Hash` implementations do.

use std::hash::{Hash, Hasher};

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MUL: u64 = 0x517c_c1b7_2722_0a95;

/// A hasher whose output is stable everywhere; see the module documentation.
#[derive(Clone, Debug)]
pub struct StableHasher {
    state: u64,
}

impl Default for StableHasher {
    fn default() -> Self {
        Self { state: SEED }
    }
}

impl StableHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(MUL);
    }
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

impl Hasher for StableHasher {
    #[inline]
    fn finish(&self) -> u64 {
        fmix64(self.state)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(word));
        }
        self.mix(bytes.len() as u64);
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64);
        self.mix((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i8(&mut self, i: i8) {
        self.mix(i64::from(i) as u64);
    }
    #[inline]
    fn write_i16(&mut self, i: i16) {
        self.mix(i64::from(i) as u64);
    }
    #[inline]
    fn write_i32(&mut self, i: i32) {
        self.mix(i64::from(i) as u64);
    }
    #[inline]
    fn write_i64(&mut self, i: i64) {
        self.mix(i as u64);
    }
    #[inline]
    fn write_i128(&mut self, i: i128) {
        self.write_u128(i as u128);
    }
    #[inline]
    fn write_isize(&mut self, i: isize) {
        self.mix(i as i64 as u64);
    }
}

/// The stable hash of a key.
#[inline]
pub fn stable_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = StableHasher::default();
    key.hash(&mut hasher);
    hasher.finish()
}

/// An id unique across processes and calls (with overwhelming probability): for
/// names that must never collide, such as a RocksDB instance's uploads or a
/// restore's scratch directory.
pub fn unique_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_never_change() {
        // These constants pin the hash: if they change, every savepoint breaks.
        assert_eq!(stable_hash(&0i64), stable_hash(&0u64));
        assert_eq!(stable_hash(&42i64), 0x5e18_397c_240a_21ca);
        assert_eq!(stable_hash(&"auction-17"), 0x5454_5ea0_fe47_d795);
        let a = stable_hash(&"auction-17");
        let b = stable_hash(&String::from("auction-17"));
        assert_eq!(a, b);
        assert_ne!(stable_hash(&1i64), stable_hash(&2i64));
    }
}
