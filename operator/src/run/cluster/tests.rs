use super::*;
use crate::kubernetes::reviews::ClusterReviews;
use metrics_registry_apiserver::auth::TokenReviewer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn clients(addr: std::net::SocketAddr, timeout: Duration) -> KubeClients {
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    KubeClients::from_config(config, timeout).unwrap()
}

/// A "hung" API server: accepts, reads, never answers.
#[tokio::test]
async fn a_hung_api_server_fails_a_review_within_the_timeout() {
    crate::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let reviews = ClusterReviews {
        client: clients(addr, Duration::from_millis(500)).request,
    };
    let started = Instant::now();
    let result = TokenReviewer::review(&reviews, "token").await;
    assert!(result.is_err(), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up after {:?}, not minutes",
        started.elapsed()
    );
}

/// A throttling API server: every answer is 503; the request client does not retry
/// (kube's default would, up to 15 times with growing pauses).
#[tokio::test]
async fn a_throttling_api_server_is_asked_once() {
    crate::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":503,"reason":"ServiceUnavailable","message":"busy"}"#;
                    let answer = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let reviews = ClusterReviews {
        client: clients(addr, Duration::from_secs(5)).request,
    };
    let result = TokenReviewer::review(&reviews, "token").await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 1, "no retries");
}
