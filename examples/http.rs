//! The HTTP API standalone: `cargo run --example http --features web`.
//!
//! Serves a memory queue with one task, `greet`, on 127.0.0.1:8080 (or
//! the address in `KESSEL_HTTP_ADDR`), open to anyone (`Auth::none()`;
//! set `KESSEL_ADMIN_TOKEN` to require that bearer token instead).
//! With `--features dashboard` it also serves the dashboard at
//! `http://127.0.0.1:8080/dashboard/`.
//!
//! ```text
//! curl -s -X POST localhost:8080/jobs -H 'content-type: application/json' \
//!      -d '{"task": "greet", "payload": "ford"}'
//! curl -s localhost:8080/jobs/<id>
//! curl -sN localhost:8080/events
//! ```

use kessel::web::{Api, Auth};
use kessel::{JobContext, JobError, Queue};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let queue = Queue::new();
    queue
        .define("greet")
        .action(|job: JobContext<serde_json::Value>| async move {
            Ok::<_, JobError>(format!("hello, {}", job.payload))
        })
        .map_err(std::io::Error::other)?;
    queue
        .process(["default"])
        .concurrency(4)
        .start()
        .map_err(std::io::Error::other)?;

    let addr = std::env::var("KESSEL_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let auth = match std::env::var("KESSEL_ADMIN_TOKEN") {
        Ok(token) if !token.is_empty() => Auth::tokens().admin(token).into(),
        _ => Auth::none(),
    };
    let server = Api::new(queue, auth).server(addr.as_str())?;
    println!("kessel HTTP API on http://{addr} (OpenAPI: http://{addr}/openapi.json)");
    server.await
}
