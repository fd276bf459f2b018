//! Headless Chromium, driven through chromedriver with fantoccini.
//!
//! Each test starts its own chromedriver on a free port (in its own
//! process group, killed when the test ends, however it ends) and one
//! browser session with a fresh profile. Tests take turns: one browser
//! at a time keeps a small machine responsive.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` the tests skip
//! with a note, unless `KESSEL_REQUIRE_BROWSER` is set (CI sets it), when
//! they fail.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a test waits for anything to show up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A browser session and the chromedriver behind it.
pub(crate) struct Browser {
    pub(crate) client: Client,
    driver: Option<Child>,
    _profile: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

/// Chromium's console, as chromedriver's log endpoint gives it: every
/// entry since the last call.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A fresh browser, or `None` (with a note) when Chromium is not
    /// installed and the browser is not required.
    // The turn is held for the whole test, across awaits on purpose: each
    // test has a runtime (and a thread) of its own, and a test waiting
    // for its turn has nothing else to run.
    #[allow(clippy::await_holding_lock)]
    pub(crate) async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var_os("KESSEL_REQUIRE_BROWSER").is_none(),
                "KESSEL_REQUIRE_BROWSER is set and {CHROMIUM} or {CHROMEDRIVER} is missing \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "note: skipping the browser test: {CHROMIUM} or {CHROMEDRIVER} is missing \
                 (apt-get install chromium chromium-driver; set KESSEL_REQUIRE_BROWSER=1 to fail instead)"
            );
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let port = free_port();
        let driver = {
            use std::os::unix::process::CommandExt;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("chromedriver starts")
        };
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let mut browser_driver = Some(driver);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    if let Some(d) = browser_driver.take() {
                        kill_group(d);
                    }
                    panic!("no browser session from chromedriver: {e}");
                }
            }
        };
        Some(Browser {
            client,
            driver: browser_driver.take(),
            _profile: profile,
            _turn: turn,
        })
    }

    /// Chromium's console errors (level SEVERE) since the last call.
    pub(crate) async fn console_errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver gives the browser's log");
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Fails the test when the page logged an error since the last check.
    pub(crate) async fn assert_no_console_errors(&self) {
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "JavaScript console errors: {errors:#?}");
    }

    /// Waits for an element.
    pub(crate) async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` within {PATIENCE:?}: {e}"))
    }

    /// Waits until `script` (a function body returning a value) returns
    /// true, polling; fails after [`PATIENCE`] with `what`.
    pub(crate) async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self
                .client
                .execute(script, vec![])
                .await
                .unwrap_or(Value::Null);
            if value == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the element `css`.
    pub(crate) async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("its text")
    }

    /// Signs in on the dashboard at `base` with `token`.
    pub(crate) async fn sign_in(&self, base: &str, token: &str) {
        self.client
            .goto(&format!("{base}/login"))
            .await
            .expect("the sign-in page");
        self.wait_for("#token")
            .await
            .send_keys(token)
            .await
            .expect("typing");
        self.wait_for("#sign-in")
            .await
            .click()
            .await
            .expect("a click");
        self.wait_for("main h1").await;
        self.wait_until("signed in", "return !document.querySelector('#token');")
            .await;
    }

    /// Writes a screenshot to `docs/images/<name>` when
    /// `KESSEL_WRITE_SCREENSHOTS` is set.
    pub(crate) async fn screenshot(&self, name: &str) {
        if std::env::var_os("KESSEL_WRITE_SCREENSHOTS").is_none() {
            return;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/images")
            .join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("docs/images");
        std::fs::write(&path, png).expect("the screenshot is written");
    }

    /// Closes the session (and the browser), then the driver.
    pub(crate) async fn finish(mut self) {
        let _ = self.client.clone().close().await;
        if let Some(driver) = self.driver.take() {
            kill_group(driver);
        }
    }
}

fn kill_group(mut driver: Child) {
    // chromedriver and the browser it started share its process group.
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg("--")
        .arg(format!("-{}", driver.id()))
        .status();
    let _ = driver.kill();
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Reached with a driver when a test fails before `finish`.
        if let Some(driver) = self.driver.take() {
            kill_group(driver);
        }
    }
}
