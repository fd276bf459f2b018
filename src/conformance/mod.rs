//! The store conformance suite (feature `test-utils`): what every
//! [`Store`] must do, as tests any store can run, kessel's own and yours.
//!
//! Each test opens a **fresh** store through a [`StoreFactory`] and runs
//! on a thread of its own, in its own actix system, so tests never share
//! state and the queue scenarios can pause tokio's clock: delays and
//! backoffs of hours take no time, and nothing sleeps on the wall clock.
//!
//! - [`store`]: the trait itself, one concern per section: inserts
//!   (round trips of every field), updates (every state transition,
//!   batches in order, logs and progress), reads (gets, queries, counts),
//!   deletes, loads (pending jobs), scale (concurrent and large writes),
//!   and the shared section: the [`SharedStore`](crate::store::SharedStore)
//!   capability (claims, leases, heartbeats, rescue, release, cancel,
//!   expiry), skipped for stores whose [`Store::shared`] is `None`, such
//!   as the memory and SQLite stores;
//! - [`queue`]: a [`Queue`](crate::Queue) on the store: ordering, delays,
//!   retries with every attempt stored, bury and kick, cancel, expiry,
//!   stats and clean, logs and progress;
//! - [`groups`]: fair groups: a job's group stored with it, weighted
//!   turns between groups within a priority, claims that share a batch;
//! - [`restart`]: the store reopened, as the next process would
//!   (capability [`StoreFactory::reopens`]; skipped for stores that
//!   cannot, such as the memory store).
//! - `schedule` (feature `cron`): recurring jobs, a suite of its own
//!   with its own `run_all` and `schedule_conformance_tests!`.
//!
//! # Running it on your store
//!
//! Give the suite a factory. A closure that makes a fresh store is one:
//!
//! ```
//! # #[actix_rt::main] async fn main() {
//! use std::sync::Arc;
//! use kessel::store::{MemoryStore, Store};
//!
//! let report = kessel::conformance::run_all(|| async {
//!     Arc::new(MemoryStore::new()) as Arc<dyn Store>
//! })
//! .await;
//! assert!(report.passed.len() > 20);
//! // The memory store can be neither reopened nor shared, and keeps no
//! // suspensions of its own (its scheduler holds them): those tests are
//! // skipped, each saying why.
//! assert!(report.skipped.len() > 2);
//! assert!(report
//!     .skipped
//!     .iter()
//!     .all(|(_, why)| why.contains("reopen") || why.contains("shared") || why.contains("keeps no")));
//! # }
//! ```
//!
//! A store that outlives its process implements [`StoreFactory`] itself,
//! so the restart tests can reopen it (see the trait's example). To get
//! one `#[test]` per behaviour (run in parallel, reported by name), put
//! [`conformance_tests!`](crate::conformance_tests) in a test file:
//!
//! ```
//! // tests/conformance.rs
//! # use std::sync::Arc;
//! # #[derive(Clone)] struct MyStoreFactory;
//! # impl kessel::conformance::StoreFactory for MyStoreFactory {
//! #     type Place = ();
//! #     async fn fresh(&self) -> Result<(Arc<dyn kessel::Store>, ()), kessel::store::StoreError> {
//! #         Ok((Arc::new(kessel::store::MemoryStore::new()), ()))
//! #     }
//! # }
//! kessel::conformance_tests!(MyStoreFactory);
//! # fn main() {}
//! ```
//!
//! A failing check panics, like `assert!`, with what was expected.

mod fixtures;
pub mod flow;
pub mod groups;
mod harness;
pub mod outcomes;
pub mod queue;
pub mod restart;
#[cfg(feature = "cron")]
pub mod schedule;
pub mod store;
pub mod suspensions;
pub mod unique;

use std::future::Future;
use std::sync::Arc;

use crate::store::{Store, StoreError};

/// Opens the stores the suite tests: a fresh one per test, and (for a
/// store that outlives its process) the same one again.
///
/// A closure returning a future of `Arc<dyn Store>` is a factory whose
/// stores cannot be reopened.
///
/// # Examples
///
/// A factory for stores kept in files, that can reopen them:
///
/// ```
/// use std::sync::Arc;
/// use kessel::conformance::StoreFactory;
/// use kessel::store::{MemoryStore, Store, StoreError};
///
/// #[derive(Clone)]
/// struct FileStores;
///
/// impl StoreFactory for FileStores {
///     // The directory a store lives in, kept for the length of a test.
///     type Place = std::path::PathBuf;
///
///     async fn fresh(&self) -> Result<(Arc<dyn Store>, Self::Place), StoreError> {
///         let place = std::env::temp_dir().join(kessel::JobId::new().to_string());
///         Ok((Arc::new(MemoryStore::new()), place)) // your store, opened at `place`
///     }
///
///     fn reopens(&self) -> bool {
///         true
///     }
///
///     async fn reopen(&self, place: &Self::Place) -> Result<Arc<dyn Store>, StoreError> {
///         let _ = place; // open your store at `place` again
///         Ok(Arc::new(MemoryStore::new()))
///     }
/// }
/// # let _ = FileStores;
/// ```
pub trait StoreFactory: Clone + Send + Sync + 'static {
    /// Where a fresh store lives (a temporary directory holding its file,
    /// a database schema): kept for the length of one test and handed to
    /// [`StoreFactory::reopen`]. `()` for stores that live in memory.
    type Place: Send + Sync + 'static;

    /// Opens a new, empty store.
    fn fresh(
        &self,
    ) -> impl Future<Output = Result<(Arc<dyn Store>, Self::Place), StoreError>> + Send;

    /// Whether [`StoreFactory::reopen`] works: the capability the restart
    /// tests need. `false` by default.
    fn reopens(&self) -> bool {
        false
    }

    /// Sets up the queues the suite builds on this factory's stores. The
    /// queue tests run on a paused clock, where hours pass at once: a
    /// shared store may lengthen its fallback polling here so those hours
    /// do not cost thousands of round trips. Unchanged by default.
    fn configure(&self, builder: crate::QueueBuilder) -> crate::QueueBuilder {
        builder
    }

    /// Opens the store at `place` again, as the next process would once
    /// the previous one stopped. The suite has shut the old store's queue
    /// down and called [`Store::close`] on it first.
    fn reopen(
        &self,
        place: &Self::Place,
    ) -> impl Future<Output = Result<Arc<dyn Store>, StoreError>> + Send {
        let _ = place;
        async { Err(StoreError::other(CannotReopen)) }
    }
}

/// The default [`StoreFactory::reopen`]'s error.
#[derive(Debug, thiserror::Error)]
#[error("this store factory cannot reopen a store")]
struct CannotReopen;

impl<F, Fut> StoreFactory for F
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Arc<dyn Store>> + Send,
{
    type Place = ();

    fn fresh(&self) -> impl Future<Output = Result<(Arc<dyn Store>, ()), StoreError>> + Send {
        let store = self();
        async move { Ok((store.await, ())) }
    }
}

/// What one test found, when it did not panic.
///
/// # Examples
///
/// ```
/// use kessel::conformance::Verdict;
/// assert!(Verdict::Passed.passed());
/// assert!(!Verdict::Skipped("needs reopen").passed());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check held.
    Passed,
    /// The store lacks a capability the test needs; says which.
    Skipped(&'static str),
}

impl Verdict {
    /// Whether the test ran and passed.
    pub fn passed(self) -> bool {
        self == Verdict::Passed
    }
}

/// What [`run_all`] found: the tests that passed and those skipped, with
/// why. (A failing test panics.)
///
/// # Examples
///
/// ```
/// let report = kessel::conformance::Report::default();
/// assert!(report.passed.is_empty() && report.skipped.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Tests that passed, by name.
    pub passed: Vec<&'static str>,
    /// Tests skipped, by name, with the missing capability.
    pub skipped: Vec<(&'static str, &'static str)>,
}

impl Report {
    fn record(&mut self, name: &'static str, verdict: Verdict) {
        match verdict {
            Verdict::Passed => self.passed.push(name),
            Verdict::Skipped(why) => self.skipped.push((name, why)),
        }
    }
}

/// Lists every test once; the callback macro gets `module::name` pairs.
macro_rules! with_every_test {
    ($callback:ident) => {
        $callback! {
            store::insert_then_get_round_trips_every_field,
            store::get_of_an_unknown_id_is_none,
            store::every_state_transition_is_recorded,
            store::updates_in_one_batch_apply_in_order,
            store::update_of_an_unknown_job_is_skipped,
            store::a_write_stores_its_updates_and_the_jobs_they_made,
            store::a_write_whose_new_job_is_refused_stores_none_of_its_updates,
            store::owned_insert_stores_what_insert_stores,
            store::a_job_keeps_its_own_callback_url,
            store::a_job_keeps_the_name_of_its_callback_secret_and_is_found_by_reference,
            store::pending_returns_every_job_not_final_as_stored,
            store::logs_append_in_order_and_progress_is_replaced,
            store::query_filters_by_status_task_reference_and_creation_time,
            store::query_orders_by_id_and_pages,
            store::count_groups_by_task_and_status,
            store::delete_removes_only_matching_final_jobs_oldest_first,
            store::delete_one_removes_a_final_job_and_only_a_final_one,
            store::pruning_completed_jobs_removes_the_earliest_finished,
            store::concurrent_writers_lose_nothing,
            store::large_batches_are_stored_whole,
            store::a_claim_takes_due_jobs_of_the_given_tasks_only,
            store::a_claim_takes_the_best_jobs_first_by_priority_then_due_time_then_creation,
            store::a_claim_never_takes_more_jobs_than_asked,
            store::a_claim_never_takes_a_job_another_owner_leases,
            store::a_job_names_the_node_that_took_its_latest_attempt,
            store::a_claim_takes_waiting_jobs_never_final_ones,
            store::a_claimed_job_is_leased_to_its_owner_until_the_lease_ends,
            store::a_heartbeat_extends_the_lease_of_its_owner,
            store::a_heartbeat_from_another_owner_changes_nothing,
            store::a_heartbeat_reports_as_lost_the_jobs_its_owner_no_longer_holds,
            store::a_lapsed_lease_of_a_running_job_is_rescued_to_ready_with_its_attempt_counted,
            store::a_running_job_held_by_no_owner_is_rescued_to_ready,
            store::a_released_job_can_be_claimed_again_in_its_stored_state,
            store::a_release_by_another_owner_changes_nothing,
            store::a_cancel_of_an_unheld_job_cancels_it_at_once,
            store::a_cancel_of_a_held_job_is_requested_and_reported_at_the_owners_heartbeat,
            store::a_requested_cancel_ends_the_job_when_its_lease_lapses,
            store::expiry_ends_only_unheld_pending_jobs_past_their_time,
            store::the_next_due_time_is_the_earliest_of_the_unheld_jobs_of_the_tasks,
            store::a_new_job_brings_a_wakeup,
            store::a_running_limit_is_held_as_places_that_owners_take_and_give_back,
            store::a_claim_takes_no_more_of_a_group_than_its_limit_per_group_leaves,
            store::a_claim_takes_no_more_of_a_rate_limited_task_than_its_rate_allows,
            store::a_claim_takes_no_more_of_a_task_or_tag_than_its_owners_caps,
            store::claims_of_many_owners_never_start_more_than_the_rate_allows_over_time,
            store::a_claim_takes_no_more_of_a_tag_than_its_running_limit_leaves,
            store::a_tag_running_limit_is_held_as_places_that_owners_take_and_give_back,
            store::places_are_shared_fairly_between_the_owners_that_need_them,
            store::claims_of_a_rate_limited_tags_tasks_by_many_owners_follow_the_tags_rate,
            store::claims_of_many_owners_follow_each_groups_own_rate,
            store::a_node_beat_registers_and_renews_a_node_and_leaving_removes_it,
            store::a_node_whose_lease_ended_is_listed_gone_until_pruned,
            store::one_owner_leads_until_its_term_ends_or_it_leaves,
            store::a_node_with_workers_is_handed_the_leadership_by_one_without,
            queue::queue_runs_jobs_by_priority_then_due_time_then_creation,
            queue::queue_delayed_jobs_never_start_early,
            queue::queue_stores_every_attempt_of_a_retried_job,
            queue::queue_kicks_a_buried_job_back_to_life,
            queue::queue_cancels_pending_and_running_jobs,
            queue::queue_expires_a_job_not_started_in_time,
            queue::queue_stats_and_clean_read_the_store,
            queue::queue_stores_logs_and_progress_with_the_job,
            outcomes::snooze_runs_a_job_again_later_without_using_an_attempt,
            outcomes::dead_letter_carries_the_buried_job_to_its_dead_letter_task,
            outcomes::redrive_runs_again_only_the_buried_jobs_its_filter_selects,
            outcomes::the_dead_set_keeps_its_newest_up_to_its_cap_and_reports_what_it_drops,
            outcomes::retry_after_waits_its_own_delay_instead_of_the_backoff,
            unique::unique_create_returns_the_live_holder_until_it_is_final,
            unique::unique_while_waiting_frees_the_key_when_the_job_starts,
            unique::unique_for_a_window_holds_the_key_after_the_job_ends,
            unique::unique_cancel_by_key_or_reference_needs_no_id,
            unique::unique_kicked_job_takes_its_key_back,
            flow::flow_max_running_caps_the_jobs_running_at_once,
            flow::flow_rate_limit_spaces_starts_and_allows_its_burst,
            flow::flow_a_rate_limit_per_minute_holds_over_simulated_minutes,
            flow::flow_rate_limit_per_process_keeps_its_pace_past_a_claims_horizon,
            flow::flow_max_running_per_group_runs_one_per_group_and_never_stalls_the_others,
            flow::flow_rate_limit_per_group_spaces_each_groups_starts_on_its_own,
            flow::flow_a_cancelled_held_job_gives_its_turn_to_the_next,
            flow::flow_tag_max_running_holds_all_the_tags_tasks_and_never_stalls_another_tag,
            flow::flow_tag_rate_limit_spaces_the_starts_of_all_the_tags_tasks,
            groups::groups_a_job_keeps_its_group,
            groups::groups_a_small_group_is_not_starved_by_a_large_backlog,
            groups::groups_weights_share_the_starts,
            groups::groups_priority_comes_before_turns,
            groups::groups_a_claim_shares_its_batch_between_groups,
            restart::restart_keeps_every_pending_job_with_its_attempts,
            restart::restart_queue_resumes_where_the_last_one_stopped,
            suspensions::suspensions_keep_who_and_since_and_the_first_wins,
            suspensions::suspensions_survive_a_reopen,
            suspensions::queue_holds_back_a_suspended_task_until_resumed,
        }
    };
}

macro_rules! define_runners {
    ($($module:ident :: $name:ident),* $(,)?) => {
        /// The name of every test, in the order [`run_all`] runs them.
        ///
        /// # Examples
        ///
        /// ```
        /// assert!(kessel::conformance::TESTS.contains(&"concurrent_writers_lose_nothing"));
        /// ```
        pub const TESTS: &[&str] = &[$(stringify!($name)),*];

        /// Runs every test, one after another, each on a fresh store from
        /// `factory`.
        ///
        /// # Panics
        ///
        /// At the first failing check, with what was expected.
        ///
        /// # Examples
        ///
        /// See the [module docs](self).
        pub async fn run_all<F: StoreFactory>(factory: F) -> Report {
            let mut report = Report::default();
            $(report.record(stringify!($name), $module::$name(&factory).await);)*
            report
        }

        /// Runs the test called `name` (one of [`TESTS`]) on a fresh store
        /// from `factory`.
        ///
        /// # Panics
        ///
        /// When a check fails, or no test has this name.
        ///
        /// # Examples
        ///
        /// ```
        /// # #[actix_rt::main] async fn main() {
        /// use std::sync::Arc;
        /// use kessel::conformance::{run_one, Verdict};
        /// use kessel::store::{MemoryStore, Store};
        /// let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
        /// assert_eq!(run_one("query_orders_by_id_and_pages", &factory).await, Verdict::Passed);
        /// # }
        /// ```
        pub async fn run_one<F: StoreFactory>(name: &str, factory: &F) -> Verdict {
            match name {
                $(stringify!($name) => $module::$name(factory).await,)*
                other => panic!("no conformance test is called `{other}`; see kessel::conformance::TESTS"),
            }
        }
    };
}

with_every_test!(define_runners);

/// [`run_one`] for a plain `#[test]` function: blocks until the test ends.
/// What [`conformance_tests!`](crate::conformance_tests) calls.
///
/// # Panics
///
/// As [`run_one`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use kessel::store::{MemoryStore, Store};
/// let factory = || async { Arc::new(MemoryStore::new()) as Arc<dyn Store> };
/// assert!(kessel::conformance::run_one_blocking("get_of_an_unknown_id_is_none", &factory).passed());
/// ```
pub fn run_one_blocking<F: StoreFactory>(name: &str, factory: &F) -> Verdict {
    futures::executor::block_on(run_one(name, factory))
}

/// Defines one `#[test]` per conformance test, each running on a fresh
/// store from the factory expression (evaluated once per test), plus one
/// that checks the list is complete. A test the store lacks the
/// capability for passes after printing why it was skipped.
///
/// # Examples
///
/// ```
/// // tests/conformance_memory.rs
/// use std::sync::Arc;
/// use kessel::store::{MemoryStore, Store};
///
/// kessel::conformance_tests!(|| async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@tests $factory;
            insert_then_get_round_trips_every_field,
            get_of_an_unknown_id_is_none,
            every_state_transition_is_recorded,
            updates_in_one_batch_apply_in_order,
            update_of_an_unknown_job_is_skipped,
            a_write_stores_its_updates_and_the_jobs_they_made,
            a_write_whose_new_job_is_refused_stores_none_of_its_updates,
            owned_insert_stores_what_insert_stores,
            a_job_keeps_its_own_callback_url,
            a_job_keeps_the_name_of_its_callback_secret_and_is_found_by_reference,
            pending_returns_every_job_not_final_as_stored,
            logs_append_in_order_and_progress_is_replaced,
            query_filters_by_status_task_reference_and_creation_time,
            query_orders_by_id_and_pages,
            count_groups_by_task_and_status,
            delete_removes_only_matching_final_jobs_oldest_first,
            delete_one_removes_a_final_job_and_only_a_final_one,
            pruning_completed_jobs_removes_the_earliest_finished,
            concurrent_writers_lose_nothing,
            large_batches_are_stored_whole,
            a_claim_takes_due_jobs_of_the_given_tasks_only,
            a_claim_takes_the_best_jobs_first_by_priority_then_due_time_then_creation,
            a_claim_never_takes_more_jobs_than_asked,
            a_claim_never_takes_a_job_another_owner_leases,
            a_job_names_the_node_that_took_its_latest_attempt,
            a_claim_takes_waiting_jobs_never_final_ones,
            a_claimed_job_is_leased_to_its_owner_until_the_lease_ends,
            a_heartbeat_extends_the_lease_of_its_owner,
            a_heartbeat_from_another_owner_changes_nothing,
            a_heartbeat_reports_as_lost_the_jobs_its_owner_no_longer_holds,
            a_lapsed_lease_of_a_running_job_is_rescued_to_ready_with_its_attempt_counted,
            a_running_job_held_by_no_owner_is_rescued_to_ready,
            a_released_job_can_be_claimed_again_in_its_stored_state,
            a_release_by_another_owner_changes_nothing,
            a_cancel_of_an_unheld_job_cancels_it_at_once,
            a_cancel_of_a_held_job_is_requested_and_reported_at_the_owners_heartbeat,
            a_requested_cancel_ends_the_job_when_its_lease_lapses,
            expiry_ends_only_unheld_pending_jobs_past_their_time,
            the_next_due_time_is_the_earliest_of_the_unheld_jobs_of_the_tasks,
            a_new_job_brings_a_wakeup,
            a_running_limit_is_held_as_places_that_owners_take_and_give_back,
            a_claim_takes_no_more_of_a_group_than_its_limit_per_group_leaves,
            a_claim_takes_no_more_of_a_rate_limited_task_than_its_rate_allows,
            a_claim_takes_no_more_of_a_task_or_tag_than_its_owners_caps,
            claims_of_many_owners_never_start_more_than_the_rate_allows_over_time,
            a_claim_takes_no_more_of_a_tag_than_its_running_limit_leaves,
            a_tag_running_limit_is_held_as_places_that_owners_take_and_give_back,
            places_are_shared_fairly_between_the_owners_that_need_them,
            claims_of_a_rate_limited_tags_tasks_by_many_owners_follow_the_tags_rate,
            claims_of_many_owners_follow_each_groups_own_rate,
            a_node_beat_registers_and_renews_a_node_and_leaving_removes_it,
            a_node_whose_lease_ended_is_listed_gone_until_pruned,
            one_owner_leads_until_its_term_ends_or_it_leaves,
            a_node_with_workers_is_handed_the_leadership_by_one_without,
            queue_runs_jobs_by_priority_then_due_time_then_creation,
            queue_delayed_jobs_never_start_early,
            queue_stores_every_attempt_of_a_retried_job,
            queue_kicks_a_buried_job_back_to_life,
            queue_cancels_pending_and_running_jobs,
            queue_expires_a_job_not_started_in_time,
            queue_stats_and_clean_read_the_store,
            queue_stores_logs_and_progress_with_the_job,
            snooze_runs_a_job_again_later_without_using_an_attempt,
            dead_letter_carries_the_buried_job_to_its_dead_letter_task,
            redrive_runs_again_only_the_buried_jobs_its_filter_selects,
            the_dead_set_keeps_its_newest_up_to_its_cap_and_reports_what_it_drops,
            retry_after_waits_its_own_delay_instead_of_the_backoff,
            unique_create_returns_the_live_holder_until_it_is_final,
            unique_while_waiting_frees_the_key_when_the_job_starts,
            unique_for_a_window_holds_the_key_after_the_job_ends,
            unique_cancel_by_key_or_reference_needs_no_id,
            unique_kicked_job_takes_its_key_back,
            flow_max_running_caps_the_jobs_running_at_once,
            flow_rate_limit_spaces_starts_and_allows_its_burst,
            flow_a_rate_limit_per_minute_holds_over_simulated_minutes,
            flow_rate_limit_per_process_keeps_its_pace_past_a_claims_horizon,
            flow_max_running_per_group_runs_one_per_group_and_never_stalls_the_others,
            flow_rate_limit_per_group_spaces_each_groups_starts_on_its_own,
            flow_a_cancelled_held_job_gives_its_turn_to_the_next,
            flow_tag_max_running_holds_all_the_tags_tasks_and_never_stalls_another_tag,
            flow_tag_rate_limit_spaces_the_starts_of_all_the_tags_tasks,
            groups_a_job_keeps_its_group,
            groups_a_small_group_is_not_starved_by_a_large_backlog,
            groups_weights_share_the_starts,
            groups_priority_comes_before_turns,
            groups_a_claim_shares_its_batch_between_groups,
            restart_keeps_every_pending_job_with_its_attempts,
            restart_queue_resumes_where_the_last_one_stopped,
            suspensions_keep_who_and_since_and_the_first_wins,
            suspensions_survive_a_reopen,
            queue_holds_back_a_suspended_task_until_resumed,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let factory = $factory;
                if let $crate::conformance::Verdict::Skipped(why) =
                    $crate::conformance::run_one_blocking(stringify!($name), &factory)
                {
                    eprintln!("skipped {}: {}", stringify!($name), why);
                }
            }
        )*

        #[test]
        fn conformance_tests_cover_the_whole_suite() {
            assert_eq!(&[$(stringify!($name)),*][..], $crate::conformance::TESTS);
        }
    };
}
