//! The fixed split of a key space (sessions, for the registry) into shards. Every node computes the same shard for the same key, whatever its version: the
//! hash is FNV-1a (64 bit), a stable, documented function.

/// How many shards each key space has.
pub const SHARDS: u16 = 256;

/// The shard of `key`.
pub fn shard(key: &str) -> u16 {
    (hash64(key) % SHARDS as u64) as u16
}

/// FNV-1a (64 bit) of `key`: the same on every node and version (also how replicas
/// count distinct users across their shards without sending the ids).
pub fn hash64(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes().fold(OFFSET, |h, b| (h ^ b as u64).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        // Fixed values: changing the function would split a running cluster.
        assert_eq!(shard(""), (0xcbf2_9ce4_8422_2325u64 % 256) as u16);
        assert_eq!(shard("chat:lobby"), shard("chat:lobby"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            seen.insert(shard(&format!("session-{i}")));
        }
        assert_eq!(seen.len(), SHARDS as usize, "every shard gets keys");
    }
}
