//! Typed jobs: a payload type names its task, so producers and the
//! handler cannot disagree on either.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::new_job::NewJob;
use crate::queue::{CreateJob, JobHandle, Queue};
use crate::task::DEFAULT_TAG;

/// A payload type that names its task: the compile-time link between the
/// jobs producers create and the handler that runs them.
///
/// Implement it on your payload struct (two lines, no derive), then
/// define the task with [`Queue::define_for`] and create jobs with
/// [`Queue::enqueue`] (or [`NewJob::of`] and
/// [`Queue::create_many`]). The handler then takes
/// [`JobContext<Self>`](crate::JobContext) and nothing else, and a job of
/// this task can only be created from a value of this type.
///
/// The task is still an ordinary task named [`TASK`](Self::TASK): a
/// producer without the type (another program, the HTTP API, the CLI)
/// creates its jobs by name with [`Queue::create`], and a job whose
/// payload does not fit is buried naming the field, as for any task.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobError, JobStatus, TaskPayload};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Email { to: String }
///
/// impl TaskPayload for Email {
///     const TASK: &'static str = "send email";
///     const TAG: &'static str = "notifications";
/// }
///
/// let queue = kessel::Queue::new();
/// queue.define_for::<Email>().timeout("30s").action(|job| async move {
///     Ok::<_, JobError>(format!("sent to {}", job.payload.to))
/// })?;
/// queue.process(["notifications"]).start()?;
///
/// let handle = queue.enqueue(Email { to: "ford@example.com".into() }).priority(1).await?;
/// assert_eq!(handle.result().await?.status, JobStatus::Completed);
///
/// // Producers without the type name the task, as before.
/// let by_name = queue.create("send email", serde_json::json!({ "to": "zaphod@example.com" })).await?;
/// assert_eq!(by_name.result().await?.status, JobStatus::Completed);
/// # Ok(()) }
/// ```
///
/// A handler for another type is a compile error, where with string
/// names the job would have been buried at run time:
///
/// ```compile_fail,E0631
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// use kessel::{JobContext, JobError, TaskPayload};
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Email { to: String }
/// impl TaskPayload for Email { const TASK: &'static str = "send email"; }
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Sms { number: String }
///
/// let queue = kessel::Queue::new();
/// queue.define_for::<Email>().action(|job: JobContext<Sms>| async move {
///     Ok::<_, JobError>(job.payload.number)
/// })?;
/// # Ok(()) }
/// ```
///
/// and so is enqueueing a value whose type names no task:
///
/// ```compile_fail,E0277
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Sms { number: String }
/// let queue = kessel::Queue::new();
/// queue.enqueue(Sms { number: "555".into() }).await?;
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` names no task: it does not implement `kessel::TaskPayload`",
    label = "a payload of no known task",
    note = "implement `kessel::TaskPayload` for `{Self}` (its `TASK` names the task), or create the job by name with `Queue::create(task, payload)`"
)]
pub trait TaskPayload: Serialize + DeserializeOwned + 'static {
    /// The task's name: what jobs of this payload are stored under and
    /// what [`Queue::define_for`] registers (the rules of
    /// [`Queue::define`] apply: not empty, no `:`).
    const TASK: &'static str;

    /// The tag [`Queue::define_for`] gives the task unless `.tag(..)`
    /// says otherwise; [`DEFAULT_TAG`] unless set. Workers serve tags
    /// ([`Queue::process`]), so a task's home is best stated once, here.
    const TAG: &'static str = DEFAULT_TAG;
}

impl Queue {
    /// Creates a job of `P`'s task ([`TaskPayload::TASK`]) with `payload`.
    /// Returns the same [`CreateJob`] as [`Queue::create`]: set options
    /// (`.delay(..)`, `.priority(..)`, ...), then `.await` it.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::TaskPayload;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Report { month: u8 }
    /// impl TaskPayload for Report { const TASK: &'static str = "monthly report"; }
    ///
    /// let queue = kessel::Queue::new();
    /// let handle = queue.enqueue(Report { month: 11 }).delay("1h").await?;
    /// let job = queue.job(handle.id()).await?;
    /// assert_eq!(&*job.task, "monthly report");
    /// assert_eq!(job.status, kessel::JobStatus::Scheduled);
    /// # Ok(()) }
    /// ```
    pub fn enqueue<P: TaskPayload>(&self, payload: P) -> CreateJob<'_> {
        CreateJob {
            queue: self,
            job: NewJob::of(payload),
        }
    }

    /// Creates a job of `P`'s task for each payload, in one call and one
    /// store write, as [`Queue::create_many`] (which takes
    /// [`NewJob::of`] for jobs with options of their own).
    ///
    /// # Errors
    ///
    /// As [`Queue::create_many`]: nothing is stored when one fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
    /// use kessel::TaskPayload;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Thumbnail { image: u32 }
    /// impl TaskPayload for Thumbnail { const TASK: &'static str = "thumbnail"; }
    ///
    /// let queue = kessel::Queue::new();
    /// let handles = queue.enqueue_many((0..10).map(|image| Thumbnail { image })).await?;
    /// assert_eq!(handles.len(), 10);
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_many<P: TaskPayload>(
        &self,
        payloads: impl IntoIterator<Item = P>,
    ) -> Result<Vec<JobHandle>, Error> {
        self.create_many(payloads.into_iter().map(NewJob::of)).await
    }
}
