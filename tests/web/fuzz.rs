//! Arbitrary bodies, ids and query strings never make the API answer 5xx
//! or an error in another shape.

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use kessel::web::{Api, Auth};
use proptest::prelude::*;
use serde_json::{json, Value};

/// JSON values of any shape, with the API's field names likely.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("window"),
            Just("waiting"),
            Just("unfinished"),
            Just("run_once"),
            Just("skip"),
            Just("Europe/Berlin"),
            Just("*/5 * * * *"),
            Just("@daily"),
        ]
        .prop_map(Value::from),
        prop_oneof![
            "[0-9]{1,20}(ms|s|m|h|d|x)?",
            "2[0-9]{3}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:00:00Z"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            Just("task".to_owned()),
            Just("payload".to_owned()),
            Just("delay".to_owned()),
            Just("run_at".to_owned()),
            Just("expires_in".to_owned()),
            Just("expires_at".to_owned()),
            Just("priority".to_owned()),
            Just("max_attempts".to_owned()),
            Just("reference".to_owned()),
            Just("jobs".to_owned()),
            Just("statuses".to_owned()),
            Just("older_than".to_owned()),
            Just("pattern".to_owned()),
            Just("unique".to_owned()),
            Just("unique_by_payload".to_owned()),
            Just("unique_scope".to_owned()),
            Just("unique_window".to_owned()),
            Just("cron".to_owned()),
            Just("every".to_owned()),
            Just("time_zone".to_owned()),
            Just("missed".to_owned()),
            Just("grace".to_owned()),
            Just("start_at".to_owned()),
            "[a-z_]{0,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies: JSON values, and raw text that is mostly not JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        "[{}\\[\\]\":,a-z0-9 ]{0,40}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn check(status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        status.as_u16() < 500,
        "{status}: {}",
        String::from_utf8_lossy(body)
    );
    if !status.is_success() {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            TestCaseError::fail(format!(
                "{status} body is not JSON ({e}): {}",
                String::from_utf8_lossy(body)
            ))
        })?;
        prop_assert!(value["error"]["code"].is_string(), "{value}");
        prop_assert!(value["error"]["message"].is_string(), "{value}");
        prop_assert!(
            value["error"].get("field").is_none_or(Value::is_string),
            "{value}"
        );
    }
    Ok(())
}

#[test]
fn arbitrary_requests_never_get_a_5xx_or_another_error_shape() {
    let system = actix_rt::System::new();
    let (queue, app) = system.block_on(async {
        // No schedule service: fuzzed schedules are stored, never ticked.
        #[cfg(feature = "cron")]
        let queue = kessel::Queue::builder()
            .manual_schedules()
            .build()
            .await
            .unwrap();
        #[cfg(not(feature = "cron"))]
        let queue = kessel::Queue::new();
        let app = test::init_service(
            App::new().service(
                Api::new(queue.clone(), Auth::none())
                    .body_limit(4096)
                    .scope(""),
            ),
        )
        .await;
        (queue, app)
    });
    let config = ProptestConfig {
        cases: 192,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        endpoint in 0usize..9,
        body in body(),
        segment in "\\PC{0,16}",
        query in "[a-z_=&,0-9%:.-]{0,30}",
    )| {
        let req = match endpoint {
            0 => TestRequest::post().uri("/jobs"),
            1 => TestRequest::post().uri("/jobs/batch"),
            2 => TestRequest::post().uri("/clean"),
            3 => TestRequest::post().uri("/delete-matching"),
            4 => TestRequest::put().uri(&format!("/schedules/{}", encode(&segment))),
            5 => TestRequest::post().uri(&format!("/jobs/{}?{query}", ["cancel", "kick", "delete"][segment.len() % 3])),
            6 => TestRequest::post().uri(&format!("/tags/{}/suspend", encode(&segment))),
            7 => TestRequest::post().uri(&format!("/schedules/{}/run-now", encode(&segment))),
            _ => TestRequest::post().uri(&format!("/jobs/{}/kick", encode(&segment))),
        };
        let req = req.insert_header(("content-type", "application/json")).set_payload(body).to_request();
        let (status, bytes) = system.block_on(async {
            let resp = test::call_service(&app, req).await;
            (resp.status(), test::read_body(resp).await)
        });
        check(status, &bytes)?;

        for uri in [
            format!("/jobs/{}", encode(&segment)),
            format!("/jobs/{}/cancel", encode(&segment)),
            format!("/jobs?{query}"),
            format!("/events?{query}&job={}", encode(&segment)),
        ] {
            let req = if uri.contains("/cancel") { TestRequest::post() } else { TestRequest::get() };
            let is_events = uri.starts_with("/events");
            let (status, bytes) = system.block_on(async {
                let resp = test::call_service(&app, req.uri(&uri).to_request()).await;
                let status = resp.status();
                // A stream that opened is not read to its (never) end.
                let bytes = if is_events && status.is_success() {
                    Default::default()
                } else {
                    test::read_body(resp).await
                };
                (status, bytes)
            });
            check(status, &bytes)?;
        }
    });
    drop(queue);
    let _ = json!(null);
}
