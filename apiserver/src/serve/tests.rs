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
    start_with(limits, PlainHttp).await
}

async fn start_with<A: Acceptor>(limits: ServeLimits, acceptor: A) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = ServeHandle::new();
    let server = tokio::spawn(serve(listener, app(), acceptor, limits, handle.signalled()));
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

/// HTTP/2 with prior knowledge for every peer but 127.0.0.1, which speaks HTTP/1.1: the
/// hostile clients below negotiate HTTP/2 (as ALPN would) and never send its preface,
/// while the probe asks plainly.
#[derive(Clone, Copy)]
struct Http2ExceptFromLocalhost;

impl Acceptor for Http2ExceptFromLocalhost {
    type Stream = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> std::io::Result<Accepted<TcpStream>> {
        let http2 = tcp.peer_addr()?.ip() != std::net::Ipv4Addr::LOCALHOST;
        Ok(Accepted {
            stream: tcp,
            http2,
            extensions: http::Extensions::new(),
        })
    }
}

/// A connection from `source` (any of 127/8) that sends nothing.
async fn silent_from(source: std::net::Ipv4Addr, addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn probe(addr: std::net::SocketAddr, within: Duration) -> Option<String> {
    exchange(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        within,
    )
    .await
}

#[tokio::test]
async fn an_http2_connection_that_never_sends_its_preface_is_closed_after_the_header_timeout() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start_with(limits, Http2ExceptFromLocalhost).await;
    let mut silent = silent_from([127, 0, 0, 2].into(), server.addr).await;
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(
        limits.header_read_timeout + SLACK,
        silent.read_to_end(&mut rest),
    )
    .await;
    assert!(closed.is_ok(), "still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= limits.header_read_timeout);
}

#[tokio::test]
async fn probes_are_answered_while_2000_hostile_sockets_are_open() {
    // One peer: its connections past the per-peer cap are closed at once, so the slots
    // it holds stay well below the total, even with a long header timeout.
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(60),
        ..ServeLimits::default()
    };
    let server = start_with(limits, Http2ExceptFromLocalhost).await;
    let mut hostile = Vec::new();
    for _ in 0..2000 {
        hostile.push(silent_from([127, 0, 0, 2].into(), server.addr).await);
    }
    let answer = probe(server.addr, SLACK).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "one peer's 2,000 silent HTTP/2 sockets block the probe: {answer:?}"
    );
    drop(hostile);
    server.handle.shutdown();

    // Eight peers, 250 each: no peer reaches its cap, the 2,000 are more than the
    // server's 1,024 slots, and the preface deadline frees them.
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(1),
        ..ServeLimits::default()
    };
    let server = start_with(limits, Http2ExceptFromLocalhost).await;
    let mut hostile = Vec::new();
    for peer in 2..10 {
        for _ in 0..250 {
            hostile.push(silent_from([127, 0, 0, peer].into(), server.addr).await);
        }
    }
    let started = Instant::now();
    let answer = probe(server.addr, limits.header_read_timeout + SLACK).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "2,000 silent HTTP/2 sockets from eight peers block the probe for {:?}: {answer:?}",
        started.elapsed()
    );
    // And the silent ones were closed, not just outnumbered.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(SLACK, hostile[0].read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a silent socket is still open");
}

#[tokio::test]
async fn a_connection_without_requests_is_closed_after_the_idle_timeout() {
    let limits = ServeLimits {
        idle_timeout: Duration::from_millis(300),
        ..ServeLimits::default()
    };
    let server = start(limits).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 512];
    let read = stream.read(&mut first).await.unwrap();
    assert!(first[..read].starts_with(b"HTTP/1.1 200"));
    // Kept alive, then idle past the idle timeout (far below the 10 s header timeout).
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(SLACK, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= limits.idle_timeout - Duration::from_millis(50));
}

#[tokio::test]
async fn a_connection_past_its_maximum_age_closes_after_answering() {
    let limits = ServeLimits {
        max_connection_age: Duration::from_millis(200),
        ..ServeLimits::default()
    };
    let server = start(limits).await;
    // The 400 ms request outlives the age; it is answered, then the connection closes.
    let answer = exchange(server.addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", SLACK).await;
    let answer = answer.expect("closed after the answer");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow ok"),
        "{answer}"
    );
}

#[test]
fn a_peer_past_its_cap_gets_no_slot_until_one_is_freed() {
    let peers = Peers::default();
    let ip: IpAddr = [10, 0, 0, 1].into();
    let first = peers.enter(ip, 2).unwrap();
    let _second = peers.enter(ip, 2).unwrap();
    assert!(peers.enter(ip, 2).is_none());
    assert!(peers.enter([10, 0, 0, 2].into(), 2).is_some());
    drop(first);
    assert!(peers.enter(ip, 2).is_some());
    assert!(peers.enter(ip, 0).is_some(), "0 is no cap");
}
