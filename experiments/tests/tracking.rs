//! Tracking against a stand-in MLflow server (the REST endpoints `metakd` uses): every metric and
//! param arrives exactly once in `runs/log-batch` requests within the server's limits, events wait
//! on disk while the server is down and are sent when it answers again, and `sync` sends what a
//! finished run left queued. `.ci/run` repeats the end-to-end check against a real `mlflow server`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metakd_experiments::tracking::client::KeyValue;
use metakd_experiments::tracking::{sync, Tracker, TrackingOptions, TRACKING_DIR};
use serde_json::{json, Value};

/// Requests the stand-in server accepted: (method and path, JSON body or byte count).
type Log = Arc<Mutex<Vec<(String, Value)>>>;

struct FakeServer {
    uri: String,
    log: Log,
    down: Arc<AtomicBool>,
}

impl FakeServer {
    fn start(down: bool) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", server.server_addr().to_ip().unwrap());
        let log: Log = Arc::default();
        let down = Arc::new(AtomicBool::new(down));
        let (log2, down2) = (log.clone(), down.clone());
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = Vec::new();
                request.as_reader().read_to_end(&mut body).unwrap();
                if down2.load(Ordering::SeqCst) {
                    let _ = request.respond(tiny_http::Response::empty(503));
                    continue;
                }
                let path = request.url().split('?').next().unwrap().to_owned();
                let what = format!("{} {path}", request.method());
                let reply = if path.ends_with("experiments/get-by-name") {
                    json!({"experiment": {"experiment_id": "7"}})
                } else if path.ends_with("runs/create") {
                    json!({"run": {"info": {"run_id": "r1", "artifact_uri": "mlflow-artifacts:/7/r1/artifacts"}}})
                } else {
                    json!({})
                };
                let recorded = serde_json::from_slice(&body).unwrap_or(json!(body.len()));
                log2.lock().unwrap().push((what, recorded));
                let _ = request.respond(tiny_http::Response::from_string(reply.to_string()));
            }
        });
        Self { uri, log, down }
    }

    fn options(&self, flush_timeout: Duration) -> TrackingOptions {
        TrackingOptions {
            uri: self.uri.clone(),
            experiment: "test".into(),
            run_name: "run".into(),
            request_timeout: Duration::from_secs(2),
            flush_timeout,
        }
    }

    /// Every log-batch body, checked against the server's limits.
    fn batches(&self) -> Vec<Value> {
        let log = self.log.lock().unwrap();
        let batches: Vec<Value> = log
            .iter()
            .filter(|(what, _)| what.ends_with("runs/log-batch"))
            .map(|(_, body)| body.clone())
            .collect();
        for body in &batches {
            let len = |k: &str| body[k].as_array().map_or(0, Vec::len);
            assert!(len("metrics") <= 1000 && len("params") <= 100 && len("tags") <= 100);
            assert!(len("metrics") + len("params") + len("tags") <= 1000);
            assert_eq!(body["run_id"], "r1");
        }
        batches
    }

    /// How often each (metric, step) arrived.
    fn metric_counts(&self) -> HashMap<(String, i64), usize> {
        let mut counts = HashMap::new();
        for body in self.batches() {
            for m in body["metrics"].as_array().unwrap() {
                let key = (
                    m["key"].as_str().unwrap().to_owned(),
                    m["step"].as_i64().unwrap(),
                );
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }
}

fn log_steps(tracker: &Tracker, steps: std::ops::Range<usize>) {
    for step in steps {
        let values: Vec<(String, f64)> = (0..10)
            .map(|k| (format!("metric_{k}"), (step * 10 + k) as f64))
            .collect();
        tracker.log_metrics(step, &values);
    }
}

fn assert_each_once(server: &FakeServer, steps: usize) {
    let counts = server.metric_counts();
    assert_eq!(counts.len(), steps * 10);
    assert!(counts.values().all(|&c| c == 1), "a metric arrived twice");
}

fn queued(run: &Path) -> usize {
    std::fs::read_to_string(run.join(TRACKING_DIR).join("events.jsonl"))
        .map_or(0, |t| t.lines().count())
}

#[test]
fn everything_arrives_once_in_batches_within_the_limits() {
    let server = FakeServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let artifact = dir.path().join("config.toml");
    std::fs::write(&artifact, "x = 1\n").unwrap();
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_secs(30))).unwrap();
    let params: Vec<KeyValue> = (0..250)
        .map(|i| KeyValue {
            key: format!("p{i}"),
            value: i.to_string(),
        })
        .collect();
    tracker.log_params(params);
    log_steps(&tracker, 0..500);
    tracker.log_artifact(&artifact);
    let report = tracker.finish("FINISHED").unwrap();
    assert_eq!(report.pending, 0);
    assert_eq!(report.run_id.as_deref(), Some("r1"));

    assert_each_once(&server, 500);
    assert!(
        server.batches().len() >= 5,
        "5000 metrics need 5 requests or more"
    );
    let params: usize = server
        .batches()
        .iter()
        .map(|b| b["params"].as_array().unwrap().len())
        .sum();
    assert_eq!(params, 250);
    let log = server.log.lock().unwrap();
    assert!(log.iter().any(|(what, bytes)| what
        == "PUT /api/2.0/mlflow-artifacts/artifacts/7/r1/artifacts/config.toml"
        && *bytes == json!(6)));
    let (last, body) = log.last().unwrap();
    assert!(last.ends_with("runs/update"), "{last}");
    assert_eq!(body["status"], "FINISHED");
}

#[test]
fn events_wait_on_disk_while_the_server_is_down_and_follow_when_it_answers() {
    let server = FakeServer::start(true);
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_secs(30))).unwrap();
    log_steps(&tracker, 0..100);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(server.log.lock().unwrap().is_empty());
    assert_eq!(queued(dir.path()), 100, "the events wait on disk");

    server.down.store(false, Ordering::SeqCst);
    log_steps(&tracker, 100..150);
    let report = tracker.finish("FINISHED").unwrap();
    assert_eq!(report.pending, 0);
    assert_each_once(&server, 150);
}

#[test]
fn a_run_that_ended_during_an_outage_is_sent_later_by_sync() {
    let server = FakeServer::start(true);
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_millis(500))).unwrap();
    log_steps(&tracker, 0..40);
    let report = tracker.finish("FINISHED").unwrap();
    assert_eq!(report.run_id, None);
    assert_eq!(
        report.pending, 41,
        "40 metric events and the end of the run wait"
    );

    server.down.store(false, Ordering::SeqCst);
    let report = sync(dir.path(), server.options(Duration::from_secs(5))).unwrap();
    assert_eq!((report.pending, report.sent), (0, 41));
    assert_each_once(&server, 40);
    // A second sync has nothing left to send.
    let before = server.log.lock().unwrap().len();
    sync(dir.path(), server.options(Duration::from_secs(5))).unwrap();
    assert_eq!(server.log.lock().unwrap().len(), before);
}
