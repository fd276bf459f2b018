//! Jobs: one request to run a task, and what became of it.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A job's id, created by kessel when the job is created.
///
/// # Examples
///
/// ```
/// let id = kessel::JobId::new();
/// let parsed: kessel::JobId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub uuid::Uuid);

/// The order of the id's bytes (so, for ids kessel makes, creation order),
/// compared as one 128-bit number: the ordered maps of pending and stored
/// jobs compare ids on every step of every lookup.
impl Ord for JobId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for JobId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A hasher for maps keyed by [`JobId`]: ids are UUIDv7 whose last eight
/// bytes are random, so folding the words with a multiply is as good as a
/// keyed hash at a fraction of the cost. For kessel's own maps only (the
/// ids are kessel's, not an attacker's).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // Length prefixes of the id's byte array carry nothing.
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

impl JobId {
    /// A new, unique id. Ids are UUIDv7, so they sort by creation time.
    pub fn new() -> Self {
        JobId(uuid::Uuid::now_v7())
    }

    /// The id as one number, ordered as the ids are: the key of kessel's
    /// maps of jobs by id.
    pub(crate) fn key(self) -> u128 {
        self.0.as_u128()
    }

    /// The id whose [`key`](Self::key) is `key`.
    pub(crate) fn from_key(key: u128) -> Self {
        JobId(uuid::Uuid::from_u128(key))
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl std::str::FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(JobId)
    }
}

/// Where a job is in its life. See `docs/lifecycle.md` for the diagram.
///
/// The first four are pending: the job will still run. The last four are
/// final: the job never changes again unless it is kicked (buried only).
///
/// # Examples
///
/// ```
/// use kessel::JobStatus;
/// assert!(JobStatus::Buried.is_final());
/// assert!(!JobStatus::Retrying.is_final());
/// assert_eq!(JobStatus::Ready.to_string(), "ready");
/// assert_eq!("buried".parse::<JobStatus>().unwrap(), JobStatus::Buried);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for its `run_at`.
    Scheduled,
    /// Due and waiting for a worker.
    Ready,
    /// A worker is running it.
    Running,
    /// Failed transiently, waiting out its backoff before the next attempt.
    Retrying,
    /// Its handler succeeded.
    Completed,
    /// Failed fatally, or transiently with no attempts left. Can be kicked.
    Buried,
    /// Was not started before its expiration.
    Expired,
    /// Was cancelled.
    Cancelled,
}

impl JobStatus {
    /// Every status, pending ones first.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Scheduled,
        JobStatus::Ready,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Completed,
        JobStatus::Buried,
        JobStatus::Expired,
        JobStatus::Cancelled,
    ];

    /// Whether the job has reached a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Buried | JobStatus::Expired | JobStatus::Cancelled
        )
    }

    /// The status as kessel writes it (`"ready"`, `"buried"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Scheduled => "scheduled",
            JobStatus::Ready => "ready",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Completed => "completed",
            JobStatus::Buried => "buried",
            JobStatus::Expired => "expired",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string that is not one of kessel's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job status `{0}` (expected one of scheduled, ready, running, retrying, completed, buried, expired, cancelled)")]
pub struct UnknownStatus(pub String);

impl std::str::FromStr for JobStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A job's payload: JSON text, shared cheaply between the store, the
/// scheduler and the handler. Short payloads (up to 14 bytes: a number, an
/// id, a short string) are held inline, with no allocation of their own;
/// longer ones are shared through one thin pointer. Either way a payload
/// is 16 bytes, as a scheduler may hold millions of them.
///
/// # Examples
///
/// ```
/// let payload = kessel::Payload::from_value(&serde_json::json!({"to": "ford"})).unwrap();
/// assert_eq!(payload.as_str(), r#"{"to":"ford"}"#);
/// ```
#[derive(Clone)]
pub struct Payload(Text);

/// The longest payload held inline.
const INLINE: usize = 14;

#[derive(Clone)]
enum Text {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    /// The bytes of a `str`, behind a pointer that is one word wide (the
    /// length lives in the allocation).
    Shared(triomphe::ThinArc<(), u8>),
}

impl Payload {
    /// Serializes `value` to a payload.
    ///
    /// # Errors
    ///
    /// What serde_json says when the value cannot be serialized (a map with
    /// non-string keys, a failing `Serialize` impl).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        thread_local! {
            /// Where this thread writes payloads before they are copied
            /// into their own allocation: one allocation per payload, not
            /// two (serde_json's growing buffer, then the payload's).
            static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        /// A larger buffer is freed after use rather than kept.
        const KEEP_AT_MOST: usize = 64 * 1024;
        BUFFER.with(|buffer| match buffer.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                serde_json::to_writer(&mut *buf, value)?;
                let payload = Self::from_bytes(&buf);
                if buf.capacity() > KEEP_AT_MOST {
                    *buf = Vec::new();
                }
                Ok(payload)
            }
            // A `Serialize` impl that makes a payload itself: it writes to
            // a buffer of its own.
            Err(_) => serde_json::to_string(value).map(|s| Self::from_text(&s)),
        })
    }

    /// A payload from JSON text the caller vouches for (as read from a store).
    pub fn from_json_unchecked(json: impl AsRef<str>) -> Self {
        Self::from_text(json.as_ref())
    }

    fn from_text(text: &str) -> Self {
        Self::from_bytes(text.as_bytes())
    }

    /// A payload of `text`: the bytes of a `str`, or JSON serde_json wrote
    /// (always UTF-8).
    fn from_bytes(text: &[u8]) -> Self {
        let mut bytes = [0u8; INLINE];
        match bytes.get_mut(..text.len()) {
            Some(room) => {
                room.copy_from_slice(text);
                Payload(Text::Inline {
                    len: text.len() as u8,
                    bytes,
                })
            }
            None => Payload(Text::Shared(triomphe::ThinArc::from_header_and_slice(
                (),
                text,
            ))),
        }
    }

    /// The payload as JSON text.
    pub fn as_str(&self) -> &str {
        let bytes = match &self.0 {
            Text::Inline { len, bytes } => &bytes[..*len as usize],
            Text::Shared(shared) => &shared.slice,
        };
        std::str::from_utf8(bytes).expect("payloads are copied from a str or serde_json's output")
    }

    /// The payload as a [`serde_json::Value`].
    ///
    /// # Errors
    ///
    /// When the stored text is not JSON (a foreign writer).
    pub fn to_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Payload {}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(self.as_str()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(Payload::from_json_unchecked(raw.get()))
    }
}

impl LogLine {
    /// The line a job's log starts with: "created", attempt 0, at its
    /// creation. Stores and the scheduler may keep it implied (a flag, not
    /// a line) and rebuild it with this.
    pub(crate) fn created(at: DateTime<Utc>) -> Self {
        LogLine::new(at, 0, "created")
    }

    /// Whether this is exactly the line [`LogLine::created`] makes for a
    /// job created at `created_at` (no data), so it may be kept implied.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn is_created_at(&self, created_at: DateTime<Utc>) -> bool {
        self.at == created_at
            && self.attempt == 0
            && self.message == "created"
            && self.data.is_none()
    }

    /// A line without data.
    pub fn new(
        at: DateTime<Utc>,
        attempt: u32,
        message: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        LogLine {
            at,
            attempt,
            message: message.into(),
            data: None,
        }
    }
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// When it was written.
    pub at: DateTime<Utc>,
    /// The attempt that wrote it (0 before the first attempt).
    pub attempt: u32,
    /// The message.
    pub message: std::borrow::Cow<'static, str>,
    /// Optional structured data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A job's last reported progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Steps done.
    pub current: u64,
    /// Steps in all.
    pub total: u64,
}

/// Everything kessel records about a job.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// let handle = queue.create("report", serde_json::json!({"month": 11})).reference("nov").await?;
/// let job = queue.job(handle.id()).await?;
/// assert_eq!(&*job.task, "report");
/// assert_eq!(job.reference.as_deref(), Some("nov"));
/// assert_eq!(job.status, kessel::JobStatus::Ready);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// kessel's id for the job.
    pub id: JobId,
    /// The producer's own reference, if it gave one.
    pub reference: Option<String>,
    /// The task the job runs.
    pub task: Arc<str>,
    /// The input for the task's handler.
    pub payload: Payload,
    /// 0 runs first; larger numbers wait.
    pub priority: u32,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// When the job was created.
    pub created_at: DateTime<Utc>,
    /// The earliest the job may start (its next attempt, while retrying).
    pub run_at: DateTime<Utc>,
    /// The latest the job may start; after that it expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed, when the producer set it; otherwise the task's
    /// retry policy decides.
    pub max_attempts: Option<u32>,
    /// The last failure's message, or the final outcome's message.
    pub last_error: Option<String>,
    /// What the handler returned, once completed.
    pub result: Option<serde_json::Value>,
    /// The last reported progress.
    pub progress: Option<Progress>,
    /// When the job reached a final state.
    pub finished_at: Option<DateTime<Utc>>,
    /// The node (the process, as [`Queue::nodes`](crate::Queue::nodes)
    /// lists it) that took the job's latest attempt, on a store shared by
    /// several processes (PostgreSQL); `None` before any process took it,
    /// and on a store of one process (memory, SQLite), where that process
    /// runs every job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_by: Option<uuid::Uuid>,
    /// The URL of the job's own webhook callback, given when it was
    /// created (feature `webhooks`: `NewJob::callback`); it wins over its
    /// task's callback. `None` when the job names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// The name of the secret ([`Webhooks::secret`](crate::webhook::Webhooks::secret))
    /// that signs the job's own callback, given when it was created
    /// (feature `webhooks`: `NewJob::callback_secret`): only the name is
    /// stored, never the secret. `None` when the job names none: its
    /// task's secret signs it, or the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    /// The job's fair group (a tenant, a customer: see
    /// [`NewJob::group`](crate::NewJob::group)): within a priority, the
    /// groups of a tag take turns. `None` for a job in no group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The job's log.
    pub logs: Vec<LogLine>,
}

impl Job {
    /// What became of the job, once it is final.
    pub fn outcome(&self) -> Option<JobResult> {
        self.status.is_final().then(|| JobResult {
            id: self.id,
            status: self.status,
            value: self.result.clone(),
            message: self.last_error.clone(),
        })
    }
}

/// What became of a job: its final status, its value and a message.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), kessel::Error> {
/// let queue = kessel::Queue::new();
/// queue.define("double").action(|job: kessel::JobContext<u32>| async move {
///     Ok::<_, kessel::JobError>(job.payload * 2)
/// })?;
/// queue.process(["default"]).start()?;
/// let result = queue.create("double", 21).await?.result().await?;
/// assert_eq!(result.status, kessel::JobStatus::Completed);
/// assert_eq!(result.value, Some(serde_json::json!(42)));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job.
    pub id: JobId,
    /// Its final status: completed, buried, expired or cancelled.
    pub status: JobStatus,
    /// What the handler returned, when it completed.
    pub value: Option<serde_json::Value>,
    /// Why it did not complete, when it did not.
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A value whose `Serialize` makes a payload of its own field first,
    /// as a wrapper that embeds another payload's text might.
    struct MakesAPayloadWhileSerializing(String);

    impl Serialize for MakesAPayloadWhileSerializing {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = Payload::from_value(&self.0).map_err(serde::ser::Error::custom)?;
            s.serialize_str(inner.as_str())
        }
    }

    /// A value serde_json refuses once it has written part of it.
    struct FailsHalfway;

    impl Serialize for FailsHalfway {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(2))?;
            seq.serialize_element("written before the failure")?;
            seq.end()?;
            Err(serde::ser::Error::custom("refused"))
        }
    }

    #[test]
    fn a_payload_made_while_serializing_another_is_its_own() {
        let outer = MakesAPayloadWhileSerializing("a fairly long inner text".into());
        let payload = Payload::from_value(&outer).unwrap();
        assert_eq!(payload.as_str(), r#""\"a fairly long inner text\"""#);
    }

    #[test]
    fn a_payload_after_a_failed_one_holds_only_its_own_text() {
        let failed = Payload::from_value(&FailsHalfway);
        assert!(failed.is_err(), "{failed:?}");
        let next = Payload::from_value(&serde_json::json!({"to": "a customer far away"})).unwrap();
        assert_eq!(next.as_str(), r#"{"to":"a customer far away"}"#);
    }

    #[test]
    fn a_payload_after_a_very_large_one_holds_only_its_own_text() {
        let large = "x".repeat(200 * 1024);
        let big = Payload::from_value(&large).unwrap();
        assert_eq!(big.as_str().len(), large.len() + 2);
        let small = Payload::from_value(&"a customer far away").unwrap();
        assert_eq!(small.as_str(), r#""a customer far away""#);
        assert_eq!(
            big.as_str()[1..large.len() + 1],
            large[..],
            "the earlier payload is untouched"
        );
    }

    #[test]
    fn short_payloads_are_held_inline() {
        assert_eq!(std::mem::size_of::<Payload>(), 16);
        let short = Payload::from_value(&1234567u64).unwrap();
        assert!(matches!(short.0, Text::Inline { .. }));
        let long = Payload::from_value(&"longer than 14").unwrap();
        assert!(matches!(long.0, Text::Shared(_)));
    }

    proptest! {
        #[test]
        fn payloads_keep_their_text_at_every_length(text in "\\PC{0,40}") {
            let json = serde_json::to_string(&text).unwrap();
            let by_value = Payload::from_value(&text).unwrap();
            let unchecked = Payload::from_json_unchecked(json.as_str());
            prop_assert_eq!(by_value.as_str(), json.as_str());
            prop_assert_eq!(unchecked.as_str(), json.as_str());
            prop_assert_eq!(&by_value, &unchecked);
            let cloned = by_value.clone();
            prop_assert_eq!(cloned.as_str(), json.as_str());
            let round: Payload = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(round.as_str(), json.as_str());
        }

        #[test]
        fn ids_order_as_their_bytes(a: [u8; 16], b: [u8; 16]) {
            let (x, y) = (JobId(uuid::Uuid::from_bytes(a)), JobId(uuid::Uuid::from_bytes(b)));
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }
}
