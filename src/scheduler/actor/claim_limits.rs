//! What a claim on a shared store asks for besides due jobs: the tasks
//! this process serves, the running and rate limits the store counts for
//! every process together, and the caps of the rate limits this process
//! counts on its own (with when to claim again once such a cap was hit).

use std::collections::HashSet;
use std::time::Duration;

use super::shared::SharedMode;
use super::Scheduler;
use crate::scheduler::services::RunningLimits;

impl Scheduler {
    /// The tasks this process serves: defined here, tag served by a
    /// running worker, not suspended.
    pub(super) fn served_tasks(&self) -> Vec<String> {
        let served: HashSet<u32> = self
            .workers
            .iter()
            .filter(|w| !w.stopped)
            .flat_map(|w| w.tags.iter().copied())
            .collect();
        self.routes
            .task_names()
            .filter(|&(_, i)| {
                let t = &self.routes.tasks[i as usize];
                t.def.is_some() && !t.suspended && t.tag.is_some_and(|tag| served.contains(&tag))
            })
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// The limits the claim counts, of the served tasks that have one:
    /// on running jobs, the task's own, each group's and its tag's; and
    /// the task's, each group's and the tag's rate limits, which the
    /// store holds for every process together. A rate limit per process
    /// is counted here, and caps the claim instead (see
    /// [`Scheduler::rate_cap`]).
    pub(super) fn running_limits(&self, tasks: &[String]) -> RunningLimits {
        let mut limits = RunningLimits::default();
        for (name, i) in self.routes.task_names() {
            if !tasks.iter().any(|t| **t == **name) {
                continue;
            }
            let Some(def) = self.routes.tasks[i as usize].def.as_ref() else {
                continue;
            };
            if let Some(max) = def.max_running {
                limits.per_task.push((name.to_string(), max));
                // As many places as this process's workers can run of
                // the task, and never fewer than it runs now (the claim
                // never takes back places in use).
                let slot = &self.routes.tasks[i as usize];
                let slots: usize = self
                    .workers
                    .iter()
                    .filter(|w| !w.stopped && slot.tag.is_some_and(|t| w.tags.contains(&t)))
                    .map(|w| w.capacity)
                    .sum();
                let running = slot.flow.as_deref().map_or(0, |f| f.running());
                let wanted = u32::try_from(slots)
                    .unwrap_or(u32::MAX)
                    .min(max)
                    .max(running);
                let holding = self.jobs.of_task(i);
                limits.places.push(crate::store::TaskPlaces {
                    task: name.to_string(),
                    wanted,
                    holding: u32::try_from(holding).unwrap_or(u32::MAX).max(running),
                    // It starts up to its places before the reply.
                    may_run: slot
                        .flow
                        .as_deref()
                        .and_then(|f| f.running_cap())
                        .unwrap_or(max)
                        .max(running),
                });
            }
            if let Some(max) = def.max_running_per_group {
                limits.per_group.push((name.to_string(), max));
            }
            match def.rate_limit {
                Some(rate) if rate.is_per_process() => {
                    let slot = &self.routes.tasks[i as usize];
                    let flow = slot.flow.as_deref();
                    if let Some(gcra) = flow.and_then(|f| f.local_rate()) {
                        let running = flow.map_or(0, |f| f.running());
                        let waiting = self.jobs.of_task(i).saturating_sub(running as usize);
                        limits
                            .task_caps
                            .push((name.to_string(), self.rate_cap(gcra, waiting)));
                    }
                }
                Some(rate) => limits.rate.push((name.to_string(), rate)),
                None => {}
            }
            if let Some(rate) = def.rate_limit_per_group {
                limits.group_rate.push((name.to_string(), rate));
            }
            // The served task's tag, once, with every task defined here
            // for it (their jobs count against its running limit).
            let Some(limit) = self.routes.tag_limit(&def.tag) else {
                continue;
            };
            if limits.tags.iter().any(|t| t.tag == def.tag)
                || limits.tag_caps.iter().any(|t| t.tag == def.tag)
            {
                continue;
            }
            let members_at: Vec<u32> = self
                .routes
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.def.as_ref().is_some_and(|d| d.tag == def.tag))
                .map(|(m, _)| m as u32)
                .collect();
            let mut members: Vec<String> = members_at
                .iter()
                .map(|&m| self.routes.tasks[m as usize].name.to_string())
                .collect();
            members.sort();
            // A tag's running limit held as places, as a task's: as many
            // as this process's workers serving the tag can run, never
            // fewer than it runs now; and the tag's jobs it holds.
            let tag_slot = self.routes.tasks[i as usize].tag;
            let gate = tag_slot
                .and_then(|t| self.routes.tag_gates.get(t as usize))
                .and_then(Option::as_ref);
            if let (Some(max), Some(t), Some(gate)) = (limit.max_running, tag_slot, gate) {
                let slots: usize = self
                    .workers
                    .iter()
                    .filter(|w| !w.stopped && w.tags.contains(&t))
                    .map(|w| w.capacity)
                    .sum();
                let running = gate.running();
                let holding: usize = members_at.iter().map(|&m| self.jobs.of_task(m)).sum();
                limits.tag_places.push(crate::store::TagPlaces {
                    tag: def.tag.clone(),
                    wanted: u32::try_from(slots)
                        .unwrap_or(u32::MAX)
                        .min(max)
                        .max(running),
                    holding: u32::try_from(holding).unwrap_or(u32::MAX).max(running),
                    // It starts up to its places before the reply.
                    may_run: gate.running_cap().unwrap_or(max).max(running),
                });
            }
            // A tag's rate limit per process caps the claim of its tasks
            // together, by what this process may start of them soon.
            let local = gate.and_then(|g| g.local_rate().map(|r| (g, r)));
            if let Some((gate, gcra)) = local {
                let holding: usize = members_at.iter().map(|&m| self.jobs.of_task(m)).sum();
                let waiting = holding.saturating_sub(gate.running() as usize);
                limits.tag_caps.push(crate::store::TagCap {
                    tag: def.tag.clone(),
                    tasks: members.clone(),
                    max: self.rate_cap(gcra, waiting),
                });
            }
            let rate = limit.rate.filter(|r| !r.is_per_process());
            if limit.max_running.is_some() || rate.is_some() {
                limits.tags.push(crate::store::TagClaimLimit {
                    tag: def.tag.clone(),
                    tasks: members,
                    max_running: limit.max_running,
                    rate,
                });
            }
        }
        limits
    }

    /// How many more jobs a claim may take under the rate limit per
    /// process `gcra`, with `waiting` of its jobs held here not started:
    /// as many as it lets start by the end of the claim's horizon (the
    /// claim takes jobs due that soon), less those. The jobs it cannot
    /// start soon stay in the store, for other processes.
    fn rate_cap(&self, gcra: &crate::flow::Gcra, waiting: usize) -> u32 {
        let (now, until) = self.rate_window();
        let allowed = gcra.allowed_by(now, until, u64::from(u32::MAX));
        u32::try_from(allowed.saturating_sub(waiting as u64)).unwrap_or(u32::MAX)
    }

    /// Now and the end of the claim's horizon, on the scheduler's clock
    /// (µs).
    fn rate_window(&self) -> (u64, u64) {
        let horizon = self
            .shared
            .as_ref()
            .map_or(Duration::ZERO, SharedMode::claim_horizon);
        let now = self.clock.now_ms().saturating_mul(1000);
        let horizon = u64::try_from(horizon.as_micros()).unwrap_or(u64::MAX);
        (now, now.saturating_add(horizon))
    }

    /// When to claim again for jobs that a rate limit per process kept in
    /// the store: a claim that took all a cap allowed (`took` of each
    /// task) may have left more due, to claim when the limit lets one
    /// more start within the horizon than wait here.
    pub(super) fn local_rate_wait(
        &self,
        task_caps: &[(String, u32)],
        tag_caps: &[crate::store::TagCap],
        took: &std::collections::HashMap<String, usize>,
    ) -> Option<Duration> {
        let (now, until) = self.rate_window();
        let horizon = until - now;
        let took_of = |t: &String| took.get(t).copied().unwrap_or(0);
        let mut first: Option<u64> = None;
        let mut wake = |at: u64| first = Some(first.map_or(at, |f| f.min(at)));
        for (task, cap) in task_caps {
            if took_of(task) < *cap as usize {
                continue;
            }
            let Some(i) = self.routes.task_index(task) else {
                continue;
            };
            let flow = self.routes.tasks[i as usize].flow.as_deref();
            let Some(gcra) = flow.and_then(|f| f.local_rate()) else {
                continue;
            };
            let running = flow.map_or(0, |f| f.running()) as usize;
            let waiting = self.jobs.of_task(i).saturating_sub(running) as u64;
            wake(gcra.start_at(now, waiting).saturating_sub(horizon));
        }
        for cap in tag_caps {
            if cap.tasks.iter().map(took_of).sum::<usize>() < cap.max as usize {
                continue;
            }
            let gate = self
                .routes
                .tag_index(&cap.tag)
                .and_then(|t| self.routes.tag_gates.get(t as usize))
                .and_then(Option::as_ref);
            let Some((gate, gcra)) = gate.and_then(|g| g.local_rate().map(|r| (g, r))) else {
                continue;
            };
            let holding: usize = cap
                .tasks
                .iter()
                .filter_map(|t| self.routes.task_index(t))
                .map(|i| self.jobs.of_task(i))
                .sum();
            let waiting = holding.saturating_sub(gate.running() as usize) as u64;
            wake(gcra.start_at(now, waiting).saturating_sub(horizon));
        }
        first.map(|at| Duration::from_micros(at.saturating_sub(now)))
    }
}
