//! The Prometheus recorder, without an HTTP listener: the app serves the
//! text it renders.

use std::sync::Arc;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::names;

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
/// The text is the exporter's (every metric recorded through the
/// `metrics` facade, kessel's counters and gauges among them) followed by
/// the job histograms kessel buckets itself
/// ([`render_histograms`](super::render_histograms)), with the builder's
/// global labels on both.
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
    /// The builder's global labels, escaped (`k="v",...`), for the job
    /// histograms kessel renders itself.
    global_labels: Arc<str>,
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
    /// assert!(prometheus.render().contains("kessel_build_info{version="));
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
        let recorder = with_buckets(builder)?.build_recorder();
        let handle = recorder.handle();
        // kessel_build_info, rendered once here, also shows the builder's
        // global labels (the exporter puts them on every series).
        metrics::with_local_recorder(&recorder, || {
            metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        });
        let global_labels = global_labels(&handle.render()).into();
        metrics::set_global_recorder(recorder).map_err(BuildError::from)?;
        Ok(Prometheus {
            handle,
            global_labels,
        })
    }

    /// The current metrics in the Prometheus text format: first the job
    /// counters are [flushed](super::flush) (so they are exact), then the
    /// exporter's text, then kessel's job histograms.
    ///
    /// # Examples
    ///
    /// ```
    /// let prometheus = kessel::metrics::Prometheus::install().unwrap();
    /// metrics::counter!("my_app_requests_total").increment(2);
    /// assert!(prometheus.render().contains("my_app_requests_total 2"));
    /// ```
    pub fn render(&self) -> String {
        super::flush();
        let mut text = self.handle.render();
        super::jobs::write_histograms(&mut text, &self.global_labels);
        text
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
    builder.set_buckets_for_metric(
        Matcher::Full(names::STORE_CALL_SECONDS.into()),
        STORE_BUCKETS,
    )
}

/// The global labels in `rendered`, read off `kessel_build_info`'s
/// series: its labels but `version` (and `task`, which kessel's own
/// label would override), as written (escaped), joined by commas.
fn global_labels(rendered: &str) -> String {
    let Some(line) = rendered
        .lines()
        .find_map(|line| line.strip_prefix(names::BUILD_INFO)?.strip_prefix('{'))
    else {
        return String::new();
    };
    let mut labels = Vec::new();
    let mut rest = line;
    // `key="value"` pairs, commas between, `}` after the last; a value
    // escapes `"` and `\` with a backslash.
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        if key != "version" && key != "task" {
            labels.push(format!("{key}=\"{}\"", &after[..end]));
        }
        rest = after[end + 1..].trim_start_matches(',');
        if rest.starts_with('}') {
            break;
        }
    }
    labels.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_labels_are_read_off_the_build_info_series_escaped_as_written() {
        let text = "# TYPE kessel_build_info gauge\n\
            kessel_build_info{service=\"bil\\\"ling\",zone=\"a,b}\",version=\"0.1.0\"} 1\n";
        assert_eq!(global_labels(text), "service=\"bil\\\"ling\",zone=\"a,b}\"");
        assert_eq!(
            global_labels("kessel_build_info{version=\"0.1.0\"} 1\n"),
            ""
        );
        assert_eq!(global_labels(""), "");
    }
}
