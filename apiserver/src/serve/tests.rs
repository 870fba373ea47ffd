use super::*;
use axum::routing::get;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLACK: Duration = Duration::from_secs(2);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "slow ok"
            }),
        )
        .route(
            "/forever",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "never"
            }),
        )
}

struct Running {
    addr: std::net::SocketAddr,
    handle: ServeHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(limits: ServeLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = ServeHandle::new();
    let server = tokio::spawn(serve(
        listener,
        app(),
        PlainHttp,
        limits,
        handle.signalled(),
    ));
    Running {
        addr,
        handle,
        server,
    }
}

/// Sends `request` as given and reads until the server closes; `None` if it does not
/// close within `within`.
async fn exchange(addr: std::net::SocketAddr, request: &str, within: Duration) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_after_the_header_timeout() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start(limits).await;
    for request in ["GET / HTTP/1.1\r\nHost: x\r\n", ""] {
        let started = Instant::now();
        let answer = exchange(server.addr, request, limits.header_read_timeout + SLACK).await;
        assert!(
            answer.is_some(),
            "{request:?}: still open after {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() >= limits.header_read_timeout,
            "{:?}",
            started.elapsed()
        );
    }
    // A complete request is still answered.
    let answer = exchange(
        server.addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        SLACK,
    )
    .await
    .unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_request_over_its_deadline_is_a_504_status() {
    let server = start(ServeLimits {
        request_timeout: Duration::from_millis(100),
        ..ServeLimits::default()
    })
    .await;
    let answer = exchange(
        server.addr,
        "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        SLACK,
    )
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains(r#""reason":"Timeout""#), "{answer}");
    assert!(answer.contains("did not complete within 100ms"), "{answer}");
}

#[tokio::test]
async fn connections_over_the_limit_wait_for_a_free_slot() {
    let server = start(ServeLimits {
        max_connections: 1,
        ..ServeLimits::default()
    })
    .await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    first
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Queued until the first connection goes.
    let request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert!(
        exchange(server.addr, request, Duration::from_millis(700))
            .await
            .is_none()
    );
    drop(first);
    let answer = exchange(server.addr, request, SLACK).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_answers_requests_in_flight_and_drops_half_sent_ones() {
    let limits = ServeLimits {
        shutdown_grace: Duration::from_secs(3),
        ..ServeLimits::default()
    };
    let server = start(limits).await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let in_flight = tokio::spawn(exchange(
        server.addr,
        "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
        SLACK + SLACK,
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.handle.shutdown();
    server.server.await.unwrap().unwrap();
    // Done once the slow request is answered, long before the grace period ends.
    assert!(
        started.elapsed() < limits.shutdown_grace,
        "{:?}",
        started.elapsed()
    );
    let answer = in_flight.await.unwrap().expect("closed after the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow ok"),
        "{answer}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(SLACK, half.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the half-sent request's connection stayed open"
    );
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_period_whatever_runs() {
    let limits = ServeLimits {
        shutdown_grace: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start(limits).await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck
        .write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    server.handle.shutdown();
    server.server.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= limits.shutdown_grace && took < limits.shutdown_grace + SLACK,
        "{took:?}"
    );
}
