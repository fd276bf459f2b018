//! Where a ready job goes in its tag's set: a job without a group takes
//! the plain path (one branch), a grouped one takes its group's turns
//! (see `scheduler/fair.rs` and [`crate::group`]).

use std::sync::Arc;

use super::routes::Routes;
use crate::scheduler::ready::ReadyKey;

impl Routes {
    /// Pushes `key`, of a job in `group` if any, into tag `tag`'s set.
    pub(super) fn push_ready(&mut self, tag: u32, key: ReadyKey, group: Option<&Arc<str>>) {
        let set = &mut self.tags[tag as usize];
        match group {
            None => set.push(key),
            Some(group) => set.push_grouped(key, group, self.groups.stride(group)),
        }
    }
}
