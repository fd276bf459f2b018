//! What the scheduler routes jobs by: the tasks and tags it knows, each
//! task's handler and middleware chain, and each tag's ready jobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::flow::{TagGate, TagLimits};
use crate::middleware::Middleware;
use crate::scheduler::ready::ReadySet;
use crate::scheduler::worker::Runnable;
use crate::suspension::{Suspended, Suspension};
use crate::task::TaskDef;

#[derive(Debug)]
pub(super) struct TaskSlot {
    pub(super) name: Arc<str>,
    pub(super) def: Option<Arc<TaskDef>>,
    pub(super) tag: Option<u32>,
    pub(super) tag_name: Option<Arc<str>>,
    /// Queue middleware then task middleware, or `None` when there is none.
    pub(super) chain: Option<Arc<[Arc<dyn Middleware>]>>,
    /// The handler, chain and grace period, for worker threads.
    pub(super) runnable: Option<Arc<Runnable>>,
    /// A suspension covers it (of the task, or of its tag): see
    /// [`Routes::suspensions`].
    pub(super) suspended: bool,
    /// Ready jobs held back: the task is not defined here, or suspended.
    pub(super) parked: Vec<(u32, u32)>,
    /// Its limits (running at once, rate) and the jobs they hold back;
    /// `None` for a task without limits.
    pub(super) flow: Option<Box<super::flow::Flow>>,
}

/// The tasks and tags a scheduler knows, by slot: a job holds its task's
/// slot, a worker its tags' slots, so routing a job is an index, not a
/// lookup by name. Slots are never removed.
#[derive(Debug, Default)]
pub(super) struct Routes {
    task_index: HashMap<Arc<str>, u32>,
    pub(super) tasks: Vec<TaskSlot>,
    tag_index: HashMap<String, u32>,
    /// Each tag's ready jobs, by tag slot.
    pub(super) tags: Vec<ReadySet>,
    /// Each tag's limits and their state, by tag slot (`None`: no limit).
    pub(super) tag_gates: Vec<Option<TagGate>>,
    /// The queue's limits per tag, a gate made from them per tag slot.
    tag_limits: TagLimits,
    /// The queue's middleware, outside every task's.
    pub(super) middleware: Vec<Arc<dyn Middleware>>,
    /// The task slot looked up last, by the name's allocation.
    last_task: Option<(Arc<str>, u32)>,
    /// The suspensions in force, of tasks and tags; each task slot's
    /// `suspended` says whether one covers it.
    pub(super) suspensions: BTreeMap<Suspended, Suspension>,
    /// Counts suspension changes made here and reads of the store's
    /// suspensions started: a read whose count has moved on when it
    /// returns is stale and is not applied.
    pub(super) suspension_epoch: u64,
    /// The fair groups' weights (see `groups.rs`).
    pub(super) groups: crate::group::GroupWeights,
}

impl Routes {
    /// Routes with the queue's fair groups' weights and limits per tag.
    pub(super) fn new(groups: crate::group::GroupWeights, tag_limits: TagLimits) -> Self {
        Routes {
            groups,
            tag_limits,
            ..Routes::default()
        }
    }

    /// The slot of task `name`, made on first sight.
    pub(super) fn task_slot(&mut self, name: &Arc<str>) -> u32 {
        // Jobs created together share their task's name: skip the lookup.
        if let Some((last, i)) = &self.last_task {
            if Arc::ptr_eq(last, name) {
                return *i;
            }
        }
        if let Some(&i) = self.task_index.get(name) {
            self.last_task = Some((name.clone(), i));
            return i;
        }
        let i = self.tasks.len() as u32;
        self.tasks.push(TaskSlot {
            name: name.clone(),
            def: None,
            tag: None,
            tag_name: None,
            chain: None,
            runnable: None,
            suspended: false,
            parked: Vec::new(),
            flow: None,
        });
        self.task_index.insert(name.clone(), i);
        i
    }

    /// The slot of tag `tag`, made on first sight.
    pub(super) fn tag_slot(&mut self, tag: &str) -> u32 {
        if let Some(&i) = self.tag_index.get(tag) {
            return i;
        }
        let i = self.tags.len() as u32;
        self.tags.push(ReadySet::default());
        self.tag_gates.push(self.tag_limits.gate(tag));
        self.tag_index.insert(tag.to_owned(), i);
        i
    }

    /// The slot of tag `tag`, if it has one.
    pub(super) fn tag_index(&self, tag: &str) -> Option<u32> {
        self.tag_index.get(tag).copied()
    }

    /// The queue's limits of tag `tag`, if any.
    pub(super) fn tag_limit(&self, tag: &str) -> Option<crate::flow::TagLimit> {
        self.tag_limits.get(tag)
    }

    /// The name of tag slot `tag`.
    pub(super) fn tag_name(&self, tag: u32) -> Option<String> {
        self.tag_index
            .iter()
            .find(|(_, &i)| i == tag)
            .map(|(name, _)| name.clone())
    }

    /// The slot of task `name`, if it has one.
    pub(super) fn task_index(&self, name: &str) -> Option<u32> {
        self.task_index.get(name).copied()
    }

    /// Every task's name and slot.
    pub(super) fn task_names(&self) -> impl Iterator<Item = (&Arc<str>, u32)> + '_ {
        self.task_index.iter().map(|(name, &i)| (name, i))
    }

    /// Routes task `def`'s jobs to its tag from now on. Returns the jobs
    /// parked on it, to queue again unless it is suspended.
    pub(super) fn install(&mut self, def: Arc<TaskDef>) -> Vec<(u32, u32)> {
        let tag = self.tag_slot(&def.tag);
        let task = self.task_slot(&def.name);
        let suspended = self.covered(&def.name, Some(&def.tag));
        let slot = &mut self.tasks[task as usize];
        slot.suspended = suspended;
        slot.tag = Some(tag);
        slot.tag_name = Some(def.tag.as_str().into());
        slot.flow = super::flow::Flow::of(&def, slot.flow.take());
        slot.def = Some(def);
        self.rebuild_chain(task);
        let slot = &mut self.tasks[task as usize];
        if slot.suspended {
            Vec::new()
        } else {
            std::mem::take(&mut slot.parked)
        }
    }

    /// Whether a suspension covers task `name`, tagged `tag`.
    pub(super) fn covered(&self, name: &str, tag: Option<&str>) -> bool {
        self.suspensions
            .contains_key(&Suspended::Task(name.to_owned()))
            || tag.is_some_and(|t| self.suspensions.contains_key(&Suspended::Tag(t.to_owned())))
    }

    /// Sets every task slot's `suspended` from the suspensions; returns
    /// the jobs parked on the tasks no longer suspended, to queue again.
    pub(super) fn apply_suspensions(&mut self) -> Vec<(u32, u32)> {
        let mut freed = Vec::new();
        for i in 0..self.tasks.len() {
            let slot = &self.tasks[i];
            let now = self.covered(&slot.name, slot.tag_name.as_deref());
            let slot = &mut self.tasks[i];
            if slot.suspended && !now && slot.def.is_some() {
                freed.append(&mut slot.parked);
            }
            slot.suspended = now;
        }
        freed
    }

    /// Builds task `task`'s middleware chain (queue middleware first) and
    /// what its worker threads run.
    pub(super) fn rebuild_chain(&mut self, task: u32) {
        let slot = &mut self.tasks[task as usize];
        let task_mw = slot
            .def
            .as_ref()
            .map(|d| d.middleware.as_slice())
            .unwrap_or(&[]);
        let chain: Vec<Arc<dyn Middleware>> =
            self.middleware.iter().chain(task_mw).cloned().collect();
        slot.chain = (!chain.is_empty()).then(|| chain.into());
        slot.runnable = slot.def.as_ref().map(|def| {
            Arc::new(Runnable {
                action: def.action.clone(),
                chain: slot.chain.clone(),
                grace: def.grace,
            })
        });
    }
}
