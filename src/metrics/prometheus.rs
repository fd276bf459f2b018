//! The Prometheus recorder, without an HTTP listener: the app serves the
//! text it renders.

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::names;

/// Bucket bounds (seconds) of the job histograms: from a millisecond to
/// an hour.
const JOB_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// Bucket bounds (seconds) of store calls: from 50 µs to 10 s.
const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 10.0,
];

/// Why [`Prometheus::install`] failed.
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() {
/// let first = kessel::metrics::Prometheus::install();
/// assert!(first.is_ok());
/// let second = kessel::metrics::Prometheus::install();
/// assert!(matches!(second, Err(kessel::metrics::InstallError::Recorder(_))));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// The builder was refused, or a global recorder is already installed
    /// (one per process).
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// The process's Prometheus recorder: [`render`](Prometheus::render) gives
/// the text format a scraper reads. Histograms are rendered with buckets,
/// so `histogram_quantile` works across instances. Cheap to clone.
///
/// Serve it from your app, for example as an actix-web route (actix-web
/// is not a dependency of kessel):
///
/// ```text
/// async fn metrics(prometheus: web::Data<Prometheus>) -> impl Responder {
///     HttpResponse::Ok()
///         .content_type("text/plain; version=0.0.4")
///         .body(prometheus.render())
/// }
/// App::new().app_data(web::Data::new(prometheus.clone())).route("/metrics", web::get().to(metrics))
/// ```
///
/// # Examples
///
/// ```
/// # #[actix_rt::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kessel::{JobContext, JobError};
/// let prometheus = kessel::metrics::Prometheus::install()?;
/// let queue = kessel::Queue::new();
/// let metrics = kessel::metrics::JobMetrics::attach(&queue);
/// queue.define("hello").action(|_: JobContext<()>| async { Ok::<_, JobError>(()) })?;
/// queue.process(["default"]).start()?;
/// queue.create("hello", ()).await?;
/// metrics.wait_finished(1).await;
///
/// // What a `/metrics` route returns:
/// fn scrape(prometheus: &kessel::metrics::Prometheus) -> String {
///     prometheus.render()
/// }
/// let body = scrape(&prometheus);
/// assert!(body.contains(r#"kessel_jobs_completed_total{task="hello"} 1"#));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Prometheus {
    handle: PrometheusHandle,
}

impl Prometheus {
    /// Installs a Prometheus recorder as the process's global recorder,
    /// with kessel's histogram buckets.
    ///
    /// # Errors
    ///
    /// [`InstallError::Recorder`] when a global recorder is already
    /// installed.
    ///
    /// # Examples
    ///
    /// ```
    /// let prometheus = kessel::metrics::Prometheus::install().unwrap();
    /// assert_eq!(prometheus.render(), "");
    /// ```
    pub fn install() -> Result<Prometheus, InstallError> {
        Prometheus::install_with(PrometheusBuilder::new())
    }

    /// Like [`install`](Prometheus::install) from a builder of yours (global
    /// labels, buckets of your own metrics); kessel adds the buckets of
    /// its histograms to it.
    ///
    /// # Errors
    ///
    /// [`InstallError::Recorder`] when the builder is refused or a global
    /// recorder is already installed.
    ///
    /// # Examples
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// let builder = PrometheusBuilder::new().add_global_label("service", "billing");
    /// let prometheus = kessel::metrics::Prometheus::install_with(builder).unwrap();
    /// # let _ = prometheus;
    /// ```
    pub fn install_with(builder: PrometheusBuilder) -> Result<Prometheus, InstallError> {
        let handle = with_buckets(builder)?.install_recorder()?;
        Ok(Prometheus { handle })
    }

    /// The current metrics in the Prometheus text format.
    ///
    /// # Examples
    ///
    /// ```
    /// let prometheus = kessel::metrics::Prometheus::install().unwrap();
    /// metrics::counter!("my_app_requests_total").increment(2);
    /// assert!(prometheus.render().contains("my_app_requests_total 2"));
    /// ```
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds recorded histogram samples into their buckets. Rendering does
    /// it too: call this on an interval only when nothing scrapes for
    /// long stretches, so samples do not pile up.
    ///
    /// # Examples
    ///
    /// ```
    /// let prometheus = kessel::metrics::Prometheus::install().unwrap();
    /// prometheus.run_upkeep();
    /// ```
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// The exporter's own handle.
    ///
    /// # Examples
    ///
    /// ```
    /// let prometheus = kessel::metrics::Prometheus::install().unwrap();
    /// let handle = prometheus.handle().clone();
    /// # let _ = handle;
    /// ```
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }
}

fn with_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder
        .set_buckets_for_metric(Matcher::Full(names::JOB_RUN_SECONDS.into()), JOB_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Full(names::JOB_LATENESS_SECONDS.into()),
            JOB_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::STORE_CALL_SECONDS.into()),
            STORE_BUCKETS,
        )
}
