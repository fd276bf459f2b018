//! Starting workers: [`Queue::process`] and its [`ProcessBuilder`], and
//! the [`WorkerHandle`] of a started worker.

use super::Queue;
use crate::error::Error;
use crate::scheduler::actor::{Placement, StartWorker};

/// The builder [`Queue::process`] returns.
#[derive(Debug)]
#[must_use = "the worker only starts with .start()"]
pub struct ProcessBuilder<'q> {
    queue: &'q Queue,
    tags: Vec<String>,
    concurrency: usize,
    placement: Option<Placement>,
}

impl ProcessBuilder<'_> {
    /// How many jobs the worker runs at once (default 1: one job after the
    /// other). 0 is read as 1.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs the worker's handlers on `threads` threads of its own (default
    /// 1), its concurrency spread over them: each job goes to the thread
    /// with the fewest jobs running. Handlers that use the CPU scale with
    /// threads up to the machine's cores; a handler that blocks one thread
    /// leaves the others running. A handler's future is created and polled
    /// on one thread, so it need not be `Send`. 0 is read as 1.
    ///
    /// Jobs and their reports cross between the scheduler's thread and
    /// these in batches. With handlers that finish within microseconds,
    /// each side stays awake up to 50 µs for the other's answer before its
    /// thread parks, so a stream of tiny jobs costs no thread wake-ups; a
    /// spin that goes unanswered backs off, so slow handlers and an idle
    /// queue cost next to no CPU.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let worker = queue.process(["images"]).concurrency(8).threads(2).start()?;
    /// assert_eq!(worker.threads(), Some(2));
    /// # Ok(()) }
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.placement = Some(Placement::Threads(threads.max(1)));
        self
    }

    /// Runs the worker's handlers on the scheduler's own thread rather
    /// than on threads of the worker's own. A job's handler is then polled
    /// first by the scheduler itself, and one that finishes at once costs
    /// no hand-off between threads: the fastest way to run many tiny jobs.
    ///
    /// **The risk:** a handler that blocks its thread (a blocking call, a
    /// long CPU loop, a future that never yields) then stalls the whole
    /// queue: timers of other jobs, timeouts, store writes, lease
    /// heartbeats on PostgreSQL (other processes then rescue and rerun the
    /// jobs this one runs) and every other worker on that thread. Use it
    /// only for handlers that always yield quickly.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// let queue = kessel::Queue::new();
    /// let worker = queue.process(["counters"]).concurrency(64).on_scheduler_thread().start()?;
    /// assert_eq!(worker.threads(), None);
    /// # Ok(()) }
    /// ```
    pub fn on_scheduler_thread(mut self) -> Self {
        self.placement = Some(Placement::SchedulerThread);
        self
    }

    /// Starts the worker.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty tag list or an empty tag.
    pub fn start(self) -> Result<WorkerHandle, Error> {
        if self.tags.is_empty() {
            return Err(Error::InvalidInput {
                field: "tags",
                reason: "a worker needs at least one tag".into(),
            });
        }
        if self.tags.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::InvalidInput {
                field: "tags",
                reason: "a tag is empty".into(),
            });
        }
        self.queue.inner.scheduler.do_send(StartWorker {
            tags: self.tags.clone(),
            concurrency: self.concurrency,
            placement: self.placement,
        });
        let placement = self.placement.unwrap_or(self.queue.inner.placement);
        Ok(WorkerHandle {
            tags: self.tags,
            concurrency: self.concurrency,
            threads: match placement {
                Placement::SchedulerThread => None,
                Placement::Threads(n) => Some(n),
            },
        })
    }
}

/// A started worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHandle {
    tags: Vec<String>,
    concurrency: usize,
    threads: Option<usize>,
}

impl WorkerHandle {
    /// The tags it serves, in order.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// How many jobs it runs at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// How many threads of its own run its handlers; `None` when they run
    /// on the scheduler's thread (see
    /// [`ProcessBuilder::on_scheduler_thread`]).
    pub fn threads(&self) -> Option<usize> {
        self.threads
    }
}

/// Reads a `QUEUE`-style list: tags separated by commas, blanks dropped.
pub(crate) fn parse_tag_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Queue {
    /// Starts a worker serving `tags`: after each job it takes the best
    /// ready job of the first tag in the list that has one. Several workers
    /// run side by side; give each tag to one worker.
    pub fn process<I, S>(&self, tags: I) -> ProcessBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessBuilder {
            queue: self,
            tags: tags.into_iter().map(Into::into).collect(),
            concurrency: 1,
            placement: None,
        }
    }

    /// Starts a worker for the tags in the `QUEUE` environment variable
    /// (comma separated, e.g. `QUEUE=mail,reports`), with
    /// `concurrency`. Returns `None` when `QUEUE` is unset or empty.
    ///
    /// # Errors
    ///
    /// As [`ProcessBuilder::start`].
    pub fn process_from_env(&self, concurrency: usize) -> Result<Option<WorkerHandle>, Error> {
        let tags = std::env::var("QUEUE")
            .map(|v| parse_tag_list(&v))
            .unwrap_or_default();
        if tags.is_empty() {
            return Ok(None);
        }
        self.process(tags)
            .concurrency(concurrency)
            .start()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_drop_blanks() {
        assert_eq!(parse_tag_list("a, b,,c ,"), vec!["a", "b", "c"]);
        assert!(parse_tag_list(" , ").is_empty());
    }
}
