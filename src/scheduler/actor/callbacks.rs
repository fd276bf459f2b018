//! Webhook callbacks on their way out (feature `webhooks`): a job that
//! reaches a final state this turn, with a callback of its own or of its
//! task (the job's wins), gets a
//! delivery job of `kessel.webhook`, made here and kept as dead letters
//! are (see `dead_letters.rs`): held at the end of the turn on the memory
//! store; on any other stored in the same write as the job's ending, so a
//! pending delivery is as durable as the ending it reports.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::table::Entry;
use super::Scheduler;
use crate::event::QueueEvent;
use crate::job::JobStatus;
use crate::new_job::NewJob;
use crate::webhook::{CallbackBody, Target, WebhookDelivery, DEFAULT_SECRET, TASK};

impl Scheduler {
    /// Where `e`'s callback goes, if anywhere: the job's own URL (signed
    /// with its own secret, else its task's, else the default one), else
    /// its task's.
    pub(super) fn callback_target(&self, e: &Entry) -> Option<Arc<Target>> {
        let task = self.routes.tasks[e.task as usize]
            .def
            .as_ref()
            .and_then(|d| d.callback.as_ref());
        match e.job.callback() {
            Some(url) => Some(Arc::new(Target {
                url: Arc::from(url),
                secret: match e.job.callback_secret() {
                    Some(name) => Arc::from(name),
                    None => task.map_or_else(|| Arc::from(DEFAULT_SECRET), |t| t.secret.clone()),
                },
            })),
            None => task.cloned(),
        }
    }

    /// Makes the delivery of `e`'s callback to `target`: `e` ended `status`
    /// at `at`, with `value` or `message`.
    pub(super) fn post_callback(
        &mut self,
        e: &Entry,
        target: &Target,
        status: JobStatus,
        value: Option<&serde_json::Value>,
        message: Option<&str>,
        at: DateTime<Utc>,
    ) {
        let task = &self.routes.tasks[e.task as usize];
        let delivery = WebhookDelivery {
            url: target.url.to_string(),
            secret: target.secret.to_string(),
            body: CallbackBody {
                job_id: e.job.id,
                task: task.name.to_string(),
                reference: e.job.reference().map(str::to_owned),
                status,
                result: value.cloned(),
                error: message.map(str::to_owned),
                attempts: e.job.attempts,
                finished_at: at,
            },
        };
        let made = NewJob::new(TASK, &delivery)
            .reference(WebhookDelivery::reference_for(e.job.id))
            .into_job(at, &mut None, self.keeper.stores_created_line());
        match made {
            Ok(job) => self.keep_made(job),
            Err(err) => self.bus.queue(QueueEvent::Error {
                message: format!(
                    "the webhook callback of job {} could not be made: {err}",
                    e.job.id
                ),
            }),
        }
    }
}
