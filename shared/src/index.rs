//! Compact indexes of the ids seen in a bundle, for uniqueness and reference checks. An id is kept as a 128-bit
//! fingerprint rather than a string: a million users cost megabytes, not hundreds of them, and a lookup never
//! touches the id's bytes again. Two different ids share a fingerprint with odds far below one in 10^20 for
//! the largest districts.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// The fingerprint of one sourcedId.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fp(u64, u64);

impl Fp {
    /// The high 64 bits, uniformly distributed.
    pub fn high(self) -> u64 {
        self.1
    }

    pub fn of(id: &[u8]) -> Fp {
        let h = xxhash_rust::xxh3::xxh3_128(id);
        Fp(h as u64, (h >> 64) as u64)
    }
}

/// Fingerprints are already uniformly distributed: hashing them again would only cost time.
#[derive(Clone, Copy, Default)]
pub struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.rotate_left(17) ^ n;
    }
}

#[derive(Clone, Copy, Default)]
pub struct FpBuild;

impl BuildHasher for FpBuild {
    type Hasher = FpHasher;
    fn build_hasher(&self) -> FpHasher {
        FpHasher(0)
    }
}

/// A map keyed by id fingerprint.
pub type FpMap<V> = HashMap<Fp, V, FpBuild>;

/// A new, empty fingerprint map.
pub fn fp_map<V>() -> FpMap<V> {
    HashMap::with_hasher(FpBuild)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_same_fingerprint_and_maps_work() {
        assert_eq!(Fp::of(b"user-1"), Fp::of(b"user-1"));
        assert_ne!(Fp::of(b"user-1"), Fp::of(b"user-2"));
        let mut m = fp_map();
        for i in 0..10_000u32 {
            m.insert(Fp::of(format!("id-{i}").as_bytes()), i);
        }
        assert_eq!(m.get(&Fp::of(b"id-1234")), Some(&1234));
        assert_eq!(m.len(), 10_000);
    }
}
