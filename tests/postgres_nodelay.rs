//! Every TCP connection kessel's PostgreSQL store opens has Nagle's
//! algorithm off (TCP_NODELAY).
//!
//! With Nagle on, a `create_many` of 64 or more jobs (kessel's COPY path:
//! several small writes, then a wait for the reply) stalls ~40 ms on the
//! server's delayed acknowledgement, and bulk throughput collapses. sqlx
//! 0.9.0 left the option unset; 0.9.1 sets it again, and `Cargo.toml`
//! requires it. This reads the option itself on the process's sockets
//! rather than timing anything, so it cannot be flaky on a busy machine.
#![cfg(all(feature = "postgres", target_os = "linux"))]
// `src/lib.rs` forbids unsafe code; this test borrows raw file descriptors
// of sockets sqlx owns, to read one socket option (see `postgres_sockets`).
#![allow(unsafe_code)]

mod common;

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg;
use kessel::store::{PgOptions, PgStore};
use kessel::{JobContext, NewJob, Queue};
use sqlx::postgres::PgConnectOptions;

const APP: &str = "kessel_nodelay_test";

/// The process's TCP sockets whose peer is `port`, with their TCP_NODELAY.
fn postgres_sockets(port: u16) -> Vec<(RawFd, SocketAddr, bool)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd") {
        let entry = entry.expect("an fd entry");
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue; // closed since the directory was read
        };
        if !link.to_string_lossy().starts_with("socket:") {
            continue;
        }
        // SAFETY: the descriptor was open a moment ago and is only used
        // for the two getsockopt/getpeername calls below, while the store
        // is idle. Were sqlx to close it meanwhile, the calls fail with
        // EBADF (skipped) or, if the number were reused, read another
        // socket's option, which is harmless in a test.
        let fd_ref = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = socket2::SockRef::from(&fd_ref);
        let Some(peer) = sock.peer_addr().ok().and_then(|a| a.as_socket()) else {
            continue; // not connected, or not an IP socket
        };
        if peer.port() != port {
            continue;
        }
        let nodelay = sock.tcp_nodelay().expect("read TCP_NODELAY");
        found.push((fd, peer, nodelay));
    }
    found
}

#[actix_rt::test]
async fn every_connection_kessel_opens_to_postgres_has_nagle_off() {
    // Only a database reachable over TCP has a Nagle's algorithm to check.
    let url = pg::url();
    let connect: PgConnectOptions = url.parse().expect("the test database URL");
    if connect.get_host().starts_with('/') {
        eprintln!("skipping: {url} is a Unix socket");
        return;
    }
    let port = connect.get_port();
    let Some(db) = pg::fresh().await else { return };
    // The helper's own pool is sqlx too but not kessel's: close it, so
    // every socket to the server below was opened by the store.
    db.pool.close().await;
    let store = PgStore::connect_with(
        PgOptions::new(&db.url)
            .schema(&db.schema)
            .application_name(APP)
            .max_connections(4),
    )
    .await
    .expect("connect the store");
    let user_pool = store.pool().clone();
    let queue = Queue::builder()
        .store(Arc::new(store))
        .build()
        .await
        .expect("build the queue");
    queue
        .define("noop")
        .action(|_: JobContext<u32>| async move { Ok::<_, kessel::JobError>(()) })
        .unwrap();
    // A running process connects the notification listener.
    queue.process(["default"]).concurrency(4).start().unwrap();

    // Bulk inserts of 128 take the COPY path, the one Nagle stalls. Their
    // latency is printed for the record, not asserted: the option below is.
    let mut took = Vec::new();
    for batch in 0..10u32 {
        let started = Instant::now();
        queue
            .create_many((0..128).map(|n| NewJob::new("noop", batch * 128 + n)))
            .await
            .unwrap();
        took.push(started.elapsed());
    }
    took.sort();
    eprintln!(
        "create_many(128): median {:?}, max {:?}",
        took[took.len() / 2],
        took[took.len() - 1]
    );

    // The store's pool, the caller's pool (`PgStore::pool`, lazy) and the
    // listener: wait until the server sees all three kinds of session.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sessions = loop {
        let (total, listening): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE query LIKE 'LISTEN%') \
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(APP)
        .fetch_one(&user_pool)
        .await
        .expect("read pg_stat_activity");
        if listening >= 1 && total >= 3 {
            break total;
        }
        assert!(
            Instant::now() < deadline,
            "the store's sessions never all connected ({total}, {listening} listening)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let sockets = postgres_sockets(port);
    assert!(
        sockets.len() >= 3,
        "expected the store's connections to port {port} among this process's \
         sockets ({sessions} sessions on the server), found {sockets:?}"
    );
    let nagle: Vec<_> = sockets.iter().filter(|(_, _, nodelay)| !nodelay).collect();
    assert!(
        nagle.is_empty(),
        "{} of {} connections to PostgreSQL have Nagle's algorithm on \
         (TCP_NODELAY unset: sqlx 0.9.0 leaves it so, 0.9.1 sets it): {nagle:?}",
        nagle.len(),
        sockets.len()
    );

    queue.shutdown(Duration::from_secs(5)).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        db.schema
    )))
    .execute(&user_pool)
    .await
    .expect("drop the test schema");
}
