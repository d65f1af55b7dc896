//! Tracking against a stand-in MLflow server (the REST endpoints `metakd` uses): every metric and
//! param arrives exactly once in `runs/log-batch` requests within the server's limits, events wait
//! on disk while the server is down and are sent when it answers again, and `sync` sends what a
//! finished run left queued. `.ci/run` repeats the end-to-end check against a real `mlflow server`.

mod common;

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

#[test]
fn a_resumed_run_sends_each_step_once() {
    let server = FakeServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_secs(30))).unwrap();
    log_steps(&tracker, 0..50);
    // Killed after iteration 49 had reached the server; its last checkpoint was at iteration
    // 30, where it resumes and logs iterations 30 to 49 again.
    let sent = dir.path().join(TRACKING_DIR).join("sent");
    while std::fs::read_to_string(&sent).map_or(true, |t| t.trim() != "50") {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tracker);
    std::thread::sleep(Duration::from_millis(500));
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_secs(30))).unwrap();
    log_steps(&tracker, 30..80);
    let report = tracker.finish("FINISHED").unwrap();
    assert_eq!(report.pending, 0);
    assert_each_once(&server, 80);
}

#[test]
fn an_unreachable_server_does_not_hold_up_the_end_of_a_run() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let options = TrackingOptions {
        uri: format!("http://127.0.0.1:{port}"),
        experiment: "test".into(),
        run_name: "run".into(),
        request_timeout: Duration::from_secs(2),
        flush_timeout: Duration::from_secs(600),
    };
    let tracker = Tracker::start(dir.path(), options).unwrap();
    log_steps(&tracker, 0..10);
    let started = std::time::Instant::now();
    let report = tracker.finish("FINISHED").unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the end waited {:?} for a server that is not there",
        started.elapsed()
    );
    assert_eq!(report.pending, 11, "the events wait for `tracking sync`");
}

fn metakd(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_metakd"));
    command.args(args).env_remove("MLFLOW_TRACKING_URI");
    command
}

#[test]
fn sync_finds_the_recorded_server_and_refuses_addresses_that_are_none() {
    let server = FakeServer::start(true);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().display().to_string();
    let never = metakd(&["tracking", "sync", "--run", &run])
        .output()
        .unwrap();
    assert!(!never.status.success());
    assert!(
        String::from_utf8_lossy(&never.stderr).contains("never reached a tracking server"),
        "{}",
        String::from_utf8_lossy(&never.stderr)
    );
    // The server answers once (the run is created and recorded), then goes down.
    server.down.store(false, Ordering::SeqCst);
    let tracker = Tracker::start(dir.path(), server.options(Duration::from_secs(3))).unwrap();
    log_steps(&tracker, 0..1);
    std::thread::sleep(Duration::from_millis(800));
    server.down.store(true, Ordering::SeqCst);
    log_steps(&tracker, 1..20);
    let sent = std::time::Instant::now();
    let report = tracker.finish("FINISHED");
    let report = report.unwrap();
    assert!(report.pending > 0 && sent.elapsed() < Duration::from_secs(60));

    server.down.store(false, Ordering::SeqCst);
    let synced = metakd(&["tracking", "sync", "--run", &run])
        .output()
        .unwrap();
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    assert_each_once(&server, 20);

    for bad in ["ftp://host:21", "localhost:5000", "http://"] {
        let output = metakd(&["tracking", "sync", "--run", &run, "--tracking-uri", bad])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("tracking URI"), "{bad}: {message}");
    }
}

#[test]
fn a_full_disk_cuts_no_line_and_the_lost_events_are_stated() {
    let server = FakeServer::start(false);
    let dir = tempfile::tempdir().unwrap();
    let shards = common::synthetic_shards(dir.path(), 4, 1);
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\nshards = \"{}\"\ntest_cases = 1\nmeta_val_cases = 1\n\n\
             [model.small]\nwidths = [2, 4, 4, 4]\n\n\
             [train]\niterations = 120\nwarmup_iterations = 2\nbatch_size = 1\n\
             crop = [16, 16, 16]\ncheckpoint_every = 1000\n\n\
             [meta]\nenabled = false\n",
            shards.display()
        ),
    )
    .unwrap();
    let run = dir.path().join("run");
    // Files of this process may grow to 96 KiB: the checkpoint and logs fit, the queue does not.
    // SIGXFSZ is ignored, so a write past the limit fails as on a full disk.
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 96; exec \"$@\"")
        .arg("metakd")
        .arg(env!("CARGO_BIN_EXE_metakd"))
        .args(["train", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .args(["--tracking-uri", &server.uri, "--flush-timeout", "20"])
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap();
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "training goes on: {message}");
    let events = std::fs::read(run.join(TRACKING_DIR).join("events.jsonl")).unwrap();
    assert!(events.ends_with(b"\n"), "no event line is cut");
    for line in String::from_utf8(events).unwrap().lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    assert!(message.contains("cannot append"), "{message}");
    assert!(message.contains("are lost"), "{message}");
    let counts = server.metric_counts();
    assert!(counts.values().all(|&c| c == 1), "a metric arrived twice");
    assert!(counts.len() < 120 * 10, "some events could not be queued");

    let synced = metakd(&["tracking", "sync", "--run", &run.display().to_string()])
        .output()
        .unwrap();
    assert!(!synced.status.success());
    let message = String::from_utf8_lossy(&synced.stderr);
    assert!(message.contains("never reached the server"), "{message}");
}
