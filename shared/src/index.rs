//! Compact indexes of the ids seen in a bundle, for uniqueness and reference checks. An id is kept as a 128-bit
//! fingerprint rather than a string: a million users cost megabytes, not hundreds of them, and a lookup never
//! touches the id's bytes again. The largest files' ids go in an [`IdTable`], flat and probed linearly. Two different ids share a fingerprint with odds far below one in 10^20 for
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

    /// The fingerprint as 16 bytes, for storing a set of ids between the plan steps.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.0.to_le_bytes());
        bytes[8..].copy_from_slice(&self.1.to_le_bytes());
        bytes
    }

    /// A fingerprint stored with [`Fp::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> Fp {
        let (low, high) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Fp(word(low), word(high))
    }

    #[inline]
    pub fn of(id: &[u8]) -> Fp {
        let h = xxhash_rust::xxh3::xxh3_128(id);
        // All zeros marks an empty slot in an [`IdTable`]; no id gets it (the odds were 2^-128 anyway).
        Fp((h as u64).max(1), (h >> 64) as u64)
    }

    /// Where the id's slot search starts in a table of `mask + 1` slots.
    fn slot(self, mask: usize) -> usize {
        self.0 as usize & mask
    }
}

/// An empty slot.
const EMPTY: Fp = Fp(0, 0);

/// The ids of one large file with a small value each, for the lookups that dominate validation: one flat array
/// of (fingerprint, value) probed linearly from the fingerprint's slot, so a lookup usually costs one cache
/// miss (a general hash map costs two: its control bytes, then the entry).
pub struct IdTable<V> {
    slots: Vec<(Fp, V)>,
    len: usize,
}

impl<V: Copy + Default> Default for IdTable<V> {
    fn default() -> Self {
        IdTable::with_capacity(0)
    }
}

impl<V: Copy + Default> IdTable<V> {
    /// Room for `n` ids before the table grows. The size is a hint: if that much memory is not there, the
    /// table starts small and grows as ids arrive.
    pub fn with_capacity(n: usize) -> IdTable<V> {
        let wanted = Self::slots_for(n);
        let mut slots = Vec::new();
        let size = if slots.try_reserve_exact(wanted).is_ok() {
            wanted
        } else {
            Self::slots_for(0)
        };
        slots.resize(size, (EMPTY, V::default()));
        IdTable { slots, len: 0 }
    }

    /// Slots for `n` ids: a power of two at most five-eighths full, so probes stay short.
    fn slots_for(n: usize) -> usize {
        n.saturating_mul(8).div_ceil(5).next_power_of_two().max(16)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, fp: &Fp) -> Option<&V> {
        let mask = self.slots.len() - 1;
        let mut i = fp.slot(mask);
        loop {
            let (key, value) = &self.slots[i];
            if key == fp {
                return Some(value);
            }
            if *key == EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    pub fn contains(&self, fp: &Fp) -> bool {
        self.get(fp).is_some()
    }

    /// Asks the processor to bring the slot where a search for `fp` starts into cache, and goes on without
    /// waiting: a search made a little later finds it there. (Off x86-64 this does nothing.)
    #[inline]
    pub fn prefetch(&self, fp: &Fp) {
        #[cfg(target_arch = "x86_64")]
        if let Some(slot) = self.slots.get(fp.slot(self.slots.len() - 1)) {
            safe_arch::prefetch_t0(slot);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fp;
    }

    /// Adds an id unless it is there already; then returns the value it has.
    pub fn insert_new(&mut self, fp: Fp, value: V) -> Option<V> {
        if (self.len + 1) * 8 > self.slots.len() * 5 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = fp.slot(mask);
        loop {
            let slot = &mut self.slots[i];
            if slot.0 == fp {
                return Some(slot.1);
            }
            if slot.0 == EMPTY {
                *slot = (fp, value);
                self.len += 1;
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Makes room for `n` ids in all, if the memory is there (otherwise the table grows as ids arrive).
    pub fn reserve(&mut self, n: usize) {
        let wanted = Self::slots_for(n);
        if wanted > self.slots.len() {
            self.resize(wanted);
        }
    }

    fn grow(&mut self) {
        self.resize(self.slots.len() * 2);
    }

    fn resize(&mut self, size: usize) {
        let mut bigger = Vec::new();
        if bigger.try_reserve_exact(size).is_err() {
            if self.len + 1 < self.slots.len() {
                // Still room: carry on at this size, only with longer probes.
                return;
            }
            // No room left: this fails like any other allocation when memory is gone.
            bigger.reserve_exact(size);
        }
        bigger.resize(size, (EMPTY, V::default()));
        let old = std::mem::replace(&mut self.slots, bigger);
        let mask = self.slots.len() - 1;
        for (fp, value) in old.into_iter().filter(|(fp, _)| *fp != EMPTY) {
            let mut i = fp.slot(mask);
            while self.slots[i].0 != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = (fp, value);
        }
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

/// A fingerprint map with room for `n` entries, so filling it never doubles it (a doubling holds both tables
/// at once). The size is a hint: if that much memory is not there, the map starts empty and grows.
pub fn fp_map_for<V>(n: usize) -> FpMap<V> {
    let mut map = fp_map();
    if map.try_reserve(n).is_err() {
        return fp_map();
    }
    map
}

/// A set of fingerprints, hashed by their (already uniform) bits.
pub type FpSet = std::collections::HashSet<Fp, FpBuild>;

/// A new, empty fingerprint set.
pub fn fp_set() -> FpSet {
    std::collections::HashSet::with_hasher(FpBuild)
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

    #[test]
    fn an_id_table_finds_what_it_holds_and_keeps_the_first_value() {
        // Starts at the smallest size, so it grows several times on the way.
        let mut t: IdTable<u32> = IdTable::with_capacity(0);
        for i in 0..10_000u32 {
            assert_eq!(t.insert_new(Fp::of(format!("id-{i}").as_bytes()), i), None);
        }
        assert_eq!(t.insert_new(Fp::of(b"id-1234"), 99), Some(1234));
        assert_eq!(t.get(&Fp::of(b"id-1234")), Some(&1234));
        assert_eq!(t.get(&Fp::of(b"id-10000")), None);
        assert!(t.contains(&Fp::of(b"id-0")));
        assert_eq!(t.len(), 10_000);
    }
}
