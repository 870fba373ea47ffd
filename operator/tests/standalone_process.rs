//! `metrics-registry run --manifests` as the real binary: a quiet reload loop, and the
//! edges of its HTTP server (slow clients, SIGTERM).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GOOD: &str = "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {name: latency}\nspec: {query: 'max(latency{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}\n";
const METRIC: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/services/cart/latency";

struct Server {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(files: &[(&str, &str)], prometheus: &str, flags: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("defs");
        std::fs::create_dir(&manifests).unwrap();
        for (name, content) in files {
            std::fs::write(manifests.join(name), content).unwrap();
        }
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_metrics-registry"))
            .arg("run")
            .arg("--manifests")
            .arg(&manifests)
            .arg("--insecure-listen")
            .arg(addr.to_string())
            .arg("--prometheus-url")
            .arg(prometheus)
            .args(flags)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            addr,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.get("/readyz").starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "not ready: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn get(&self, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(self.addr) else {
            return String::new();
        };
        let _ = write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// How long the process took to exit, or `None` if it is still running after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Prometheus that accepts connections and never answers.
fn silent_prometheus() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    url
}

#[test]
fn an_idle_folder_is_not_reread_and_a_broken_file_is_reported_once() {
    let server = Server::start(
        &[("good.yaml", GOOD), ("broken.yaml", "kind: [unclosed")],
        "http://127.0.0.1:9",
        &["--log-level", "info"],
    );
    // Served although another file is broken.
    let answer = server.get("/apis/custom.metrics.k8s.io/v1beta2");
    assert!(answer.contains("services/latency"), "{answer}");
    std::thread::sleep(Duration::from_secs(2));
    let log = server.log();
    assert_eq!(log.matches("broken.yaml").count(), 1, "{log}");
    assert_eq!(log.matches("definitions published").count(), 1, "{log}");
}

#[test]
fn slow_clients_are_disconnected_after_the_header_timeout() {
    let server = Server::start(
        &[("good.yaml", GOOD)],
        "http://127.0.0.1:9",
        &["--header-read-timeout", "500ms"],
    );
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(read.is_ok(), "still open after {took:?}: {read:?}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn sigterm_ends_within_the_grace_period_with_half_sent_and_running_requests() {
    let mut server = Server::start(
        &[("good.yaml", GOOD)],
        &silent_prometheus(),
        &["--shutdown-grace", "2s", "--prometheus-timeout", "700ms"],
    );
    let mut half = TcpStream::connect(server.addr).unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {METRIC} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    });
    std::thread::sleep(Duration::from_millis(200));
    server.terminate();
    let took = server
        .wait_exit(Duration::from_secs(6))
        .unwrap_or_else(|| panic!("still running 6 s after SIGTERM: {}", server.log()));
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The request in flight got its honest answer before the process went.
    let answer = in_flight.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("did not answer within 700ms"), "{answer}");
}
