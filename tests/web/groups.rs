//! Fair groups over the API: `group` in `POST /jobs` and batches, shown
//! by `GET /jobs/{id}`; a bad key is a 400 naming the field.

use actix_web::http::StatusCode;
use actix_web::test;
use kessel::Queue;
use serde_json::json;

use crate::{error_of, get, id_of, json_of, open_app, post};

#[actix_rt::test]
async fn a_job_created_in_a_group_shows_it() {
    let queue = Queue::new();
    let app = test::init_service(open_app(&queue)).await;
    let created = json_of(
        &app,
        post(
            "/kessel/jobs",
            json!({"task": "export", "payload": 1, "group": "tenant-42"}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let id = id_of(&created);
    let job = json_of(&app, get(&format!("/kessel/jobs/{id}")), StatusCode::OK).await;
    assert_eq!(job["group"], json!("tenant-42"), "{job}");
    let created = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "export", "group": "a"}, {"task": "export"}]}),
        ),
        StatusCode::CREATED,
    )
    .await;
    let ids: Vec<String> = created["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .map(|i| i.as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids.len(), 2, "{created}");
    let first = json_of(
        &app,
        get(&format!("/kessel/jobs/{}", ids[0])),
        StatusCode::OK,
    )
    .await;
    let second = json_of(
        &app,
        get(&format!("/kessel/jobs/{}", ids[1])),
        StatusCode::OK,
    )
    .await;
    assert_eq!(first["group"], json!("a"));
    assert!(
        second.get("group").is_none(),
        "no group, no field: {second}"
    );
}

#[actix_rt::test]
async fn a_bad_group_is_400_naming_the_field_and_creates_nothing() {
    let queue = Queue::new();
    let app = test::init_service(open_app(&queue)).await;
    let long = "g".repeat(kessel::MAX_GROUP_KEY_LEN + 1);
    for key in ["", "   ", "tab\there", long.as_str()] {
        let body = json_of(
            &app,
            post("/kessel/jobs", json!({"task": "export", "group": key})),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(
            error_of(&body),
            ("invalid_field".into(), Some("group".into())),
            "{key:?}: {body}"
        );
    }
    let body = json_of(
        &app,
        post(
            "/kessel/jobs/batch",
            json!({"jobs": [{"task": "export", "group": "a"}, {"task": "export", "group": ""}]}),
        ),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        error_of(&body),
        ("invalid_field".into(), Some("jobs[1].group".into())),
        "{body}"
    );
    let page = json_of(&app, get("/kessel/jobs"), StatusCode::OK).await;
    assert_eq!(page["jobs"], json!([]), "nothing was created: {page}");
}
