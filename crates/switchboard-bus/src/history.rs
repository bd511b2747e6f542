//! The rule both buses follow to tell whether a position is continuous: whether everything
//! published on a channel after it is still kept.
//!
//! Offsets count a whole store's publications (a JetStream stream's sequence, or the
//! in-process broker's per-namespace counter), so a channel's offsets grow by more than one
//! and a gap cannot be seen from the numbers alone. What can be seen:
//! - the publication at `since` is still kept: then so is everything after it, because both
//!   trimmings (by size, a channel's oldest first; by age, the store's oldest first) and a
//!   removal take it before anything later;
//! - or nothing after `since` can have gone: nothing was trimmed by age past it (the store's
//!   oldest kept offset is at most `since + 1`), the channel holds fewer publications than
//!   its size (so none was trimmed by size), and its first one after `since` is not a
//!   removal marker (left by `remove_history`).
//!
//! The second test can say "not continuous" when nothing was lost (another channel's
//! trimming moved the store's oldest offset); it never says "continuous" when something was.

use std::sync::Arc;

use crate::Position;

/// What a store knows about one channel when asked about a position.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub epoch: Arc<str>,
    /// The lowest offset kept in the whole store (its last offset + 1 when it is empty).
    pub store_first: u64,
    /// The last offset the store gave.
    pub store_last: u64,
    /// Entries kept for the channel, removal markers included.
    pub channel_total: u64,
    /// The namespace's size (entries kept per channel).
    pub size: u32,
    /// The channel has an entry at `since.offset`.
    pub has_since: bool,
    /// The channel's first entry after `since.offset` is a removal marker.
    pub first_after_is_marker: bool,
}

/// Whether everything published on the channel after `since` is still kept.
pub(crate) fn continuous(since: &Position, k: &Kept) -> bool {
    since.epoch == k.epoch
        && since.offset <= k.store_last
        && (k.has_since
            || (k.store_first <= since.offset.saturating_add(1)
                && k.channel_total < u64::from(k.size)
                && !k.first_after_is_marker))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Kept {
        Kept {
            epoch: Arc::from("e"),
            store_first: 1,
            store_last: 10,
            channel_total: 3,
            size: 5,
            has_since: false,
            first_after_is_marker: false,
        }
    }

    fn at(offset: u64, epoch: &str) -> Position {
        Position { offset, epoch: Arc::from(epoch) }
    }

    #[test]
    fn a_kept_position_is_continuous_and_a_trimmed_one_only_when_nothing_can_have_gone() {
        let k = kept();
        assert!(continuous(&at(4, "e"), &Kept { has_since: true, channel_total: 5, store_first: 9, ..k.clone() }));
        assert!(continuous(&at(4, "e"), &k), "nothing trimmed by age or size");
        assert!(!continuous(&at(4, "other"), &Kept { has_since: true, ..k.clone() }), "another epoch");
        assert!(!continuous(&at(11, "e"), &k), "a position the store never gave");
        assert!(!continuous(&at(4, "e"), &Kept { store_first: 6, ..k.clone() }), "the store's oldest went past it");
        assert!(!continuous(&at(4, "e"), &Kept { channel_total: 5, ..k.clone() }), "the channel is at its size");
        assert!(!continuous(&at(4, "e"), &Kept { first_after_is_marker: true, ..k }), "removed since");
    }
}
