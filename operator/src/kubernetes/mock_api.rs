//! A scripted API server for unit tests of the kube edge: each expected request (method,
//! path with query, and what its body must contain) gets a canned answer, in order; a
//! request that was not expected fails the test. Pins the exact requests the code makes.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::Value;
use std::pin::pin;
use tower_test::mock;

/// Asserts about a request's JSON body.
pub type BodyCheck = Box<dyn Fn(&Value) + Send>;

/// One expected request and its answer.
pub struct Exchange {
    pub method: Method,
    /// Path and query, e.g. `/apis/coordination.k8s.io/v1/namespaces/ns/leases/name`.
    pub path: String,
    /// Checks the request body (JSON); `None` when nothing is asserted about it.
    pub body: Option<BodyCheck>,
    pub status: StatusCode,
    pub answer: Value,
}

impl Exchange {
    pub fn new(method: Method, path: impl Into<String>, status: u16, answer: Value) -> Exchange {
        Exchange {
            method,
            path: path.into(),
            body: None,
            status: StatusCode::from_u16(status).expect("status code"),
            answer,
        }
    }

    pub fn with_body(mut self, check: impl Fn(&Value) + Send + 'static) -> Exchange {
        self.body = Some(Box::new(check));
        self
    }
}

/// A `metav1.Status` answer, as the API server sends with errors.
pub fn status(code: u16, reason: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "code": code, "reason": reason, "message": format!("{reason} (from the mock)"),
    })
}

/// A client whose requests are answered by `script`, and the task that plays it; await
/// the task to make sure every expected request was made.
pub fn scripted(script: Vec<Exchange>) -> (kube::Client, tokio::task::JoinHandle<()>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = pin!(handle);
        for (index, exchange) in script.into_iter().enumerate() {
            let (request, respond) = handle.next_request().await.unwrap_or_else(|| {
                panic!(
                    "request {index} ({} {}) was never made",
                    exchange.method, exchange.path
                )
            });
            let method = request.method().clone();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            assert_eq!(
                (&method, path.as_str()),
                (&exchange.method, exchange.path.as_str()),
                "request {index}"
            );
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            if let Some(check) = &exchange.body {
                let body: Value = serde_json::from_slice(&bytes).expect("a JSON request body");
                check(&body);
            }
            let response = Response::builder()
                .status(exchange.status)
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::to_vec(&exchange.answer).expect("JSON"),
                ))
                .expect("response");
            respond.send_response(response);
        }
        // Nothing more may follow.
        if let Ok(Some((request, _))) =
            tokio::time::timeout(std::time::Duration::from_millis(50), handle.next_request()).await
        {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    });
    (kube::Client::new(service, "default"), task)
}

/// A client whose every request is refused with 403, for code under test that starts
/// background requests (object caches) nobody asserts about.
pub fn refusing() -> kube::Client {
    let service = tower::service_fn(|_: Request<Body>| async {
        let response = Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::to_vec(&status(403, "Forbidden")).expect("JSON"),
            ))
            .expect("response");
        Ok::<_, std::convert::Infallible>(response)
    });
    kube::Client::new(service, "default")
}
