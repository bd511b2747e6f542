//! The consistent-hash ring that gives each of the 256 registry shards an owner
//! among the live control replicas.
//!
//! Every replica computes the same owners from the same set of ids, whatever the order it
//! learned them in: the ring is a `hashring::HashRing` (SipHash with fixed keys) over
//! [`VNODES`] virtual nodes per replica, hashed from `"{id}#{i}"` as raw bytes, and a shard
//! is looked up by its number as two big-endian bytes. Adding or removing a replica moves
//! only the shards whose nearest virtual node changes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashring::HashRing;
use switchboard_bus::shard::SHARDS;

/// Virtual nodes per replica: enough to spread 256 shards within a few percent.
pub const VNODES: usize = 64;

/// The owner of every shard, indexed by shard number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owners(Vec<Arc<str>>);

/// A set of shard numbers (a 256-bit set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardSet([u64; 4]);

/// One virtual node: hashed by its key, standing for its replica.
#[derive(Clone)]
struct VNode {
    key: String,
    id: Arc<str>,
}

/// A shard number as a ring key, hashed as fixed-endian bytes.
struct ShardKey(u16);

// === impl Owners ===

impl Owners {
    /// The owners of every shard for this set of live replicas (empty set: no owners).
    pub fn compute(ids: &[Arc<str>]) -> Owners {
        if ids.is_empty() {
            return Owners(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut ring = HashRing::new();
        ring.batch_add(
            ids.iter()
                .flat_map(|id| (0..VNODES).map(move |i| VNode { key: format!("{id}#{i}"), id: id.clone() }))
                .collect(),
        );
        Owners((0..SHARDS).map(|s| ring.get(&ShardKey(s)).expect("the ring is not empty").id.clone()).collect())
    }

    /// The owner of `shard`, if any replica is live.
    pub fn owner(&self, shard: u16) -> Option<&Arc<str>> {
        self.0.get(shard as usize)
    }

    /// The shards `id` owns, ascending.
    pub fn owned_by(&self, id: &str) -> Vec<u16> {
        (0..self.0.len()).filter(|&s| &*self.0[s] == id).map(|s| s as u16).collect()
    }

    /// Whether the ring has been computed over at least one replica.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// === impl ShardSet ===

impl ShardSet {
    /// Every shard.
    #[cfg(test)]
    pub fn all() -> ShardSet {
        ShardSet([u64::MAX; 4])
    }

    pub fn contains(&self, shard: u16) -> bool {
        shard < SHARDS && self.0[(shard / 64) as usize] & (1 << (shard % 64)) != 0
    }

    pub fn insert(&mut self, shard: u16) {
        if shard < SHARDS {
            self.0[(shard / 64) as usize] |= 1 << (shard % 64);
        }
    }

    pub fn remove(&mut self, shard: u16) {
        if shard < SHARDS {
            self.0[(shard / 64) as usize] &= !(1 << (shard % 64));
        }
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Adds every shard of `other`; returns whether the two sets shared any.
    pub fn merge(&mut self, other: &ShardSet) -> bool {
        let overlap = self.0.iter().zip(other.0).any(|(a, b)| a & b != 0);
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        overlap
    }

    /// 64 hex digits (shard 0 is the lowest bit of the last digit).
    pub fn to_hex(self) -> String {
        self.0.iter().rev().map(|w| format!("{w:016x}")).collect()
    }

    /// Reads [`ShardSet::to_hex`]'s form.
    pub fn from_hex(s: &str) -> Option<ShardSet> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().rev().enumerate() {
            *w = u64::from_str_radix(&s[i * 16..(i + 1) * 16], 16).ok()?;
        }
        Some(ShardSet(words))
    }

    /// The shards, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..SHARDS).filter(|s| self.contains(*s))
    }
}

impl FromIterator<u16> for ShardSet {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut set = ShardSet::default();
        for s in iter {
            set.insert(s);
        }
        set
    }
}

// === impl VNode ===

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.key.as_bytes());
    }
}

impl Hash for ShardKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|n| Arc::from(*n)).collect()
    }

    #[test]
    fn every_shard_has_exactly_one_owner_whatever_the_order() {
        let a = Owners::compute(&ids(&["c1", "c2", "c3"]));
        let b = Owners::compute(&ids(&["c3", "c1", "c2", "c1"]));
        assert_eq!(a, b);
        let total: usize = ["c1", "c2", "c3"].iter().map(|id| a.owned_by(id).len()).sum();
        assert_eq!(total, SHARDS as usize);
        for id in ["c1", "c2", "c3"] {
            let n = a.owned_by(id).len();
            assert!((40..=140).contains(&n), "{id} owns {n} shards");
        }
    }

    #[test]
    fn removing_a_replica_moves_only_its_shards() {
        let before = Owners::compute(&ids(&["c1", "c2", "c3"]));
        let after = Owners::compute(&ids(&["c1", "c2"]));
        for s in 0..SHARDS {
            if &**before.owner(s).unwrap() != "c3" {
                assert_eq!(before.owner(s), after.owner(s), "shard {s} moved");
            }
        }
    }

    #[test]
    fn shard_sets_survive_their_hex_form() {
        for shards in [vec![], vec![0], vec![255], vec![0, 63, 64, 127, 128, 200, 255], (0..256).collect()] {
            let set: ShardSet = shards.iter().copied().collect();
            assert_eq!(ShardSet::from_hex(&set.to_hex()), Some(set), "{shards:?}");
            assert_eq!(set.iter().collect::<Vec<_>>(), shards);
        }
        let mut a: ShardSet = [1, 2].into_iter().collect();
        assert!(!a.merge(&[3].into_iter().collect()));
        assert!(a.merge(&[3, 4].into_iter().collect()));
        assert_eq!(a.len(), 4);
        for bad in ["", "xyz", &"g".repeat(64), &"0".repeat(63)] {
            assert_eq!(ShardSet::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn owners_are_stable_across_versions() {
        // Fixed values: a change here means replicas of different versions disagree.
        let o = Owners::compute(&ids(&["a", "b"]));
        let a: Vec<u16> = o.owned_by("a");
        assert_eq!((a.len(), &a[..8]), (135, &[0, 1, 2, 4, 5, 8, 9, 10][..]));
        assert_eq!(a.len() + o.owned_by("b").len(), 256);
        assert!(Owners::compute(&[]).is_empty());
    }
}
