//! Experiment tracking on an MLflow server through its REST API.
//!
//! Training hands events (params, metrics, artifacts, the end of the run) to a background thread,
//! which appends them to an on-disk queue in the run folder (`tracking/`) and sends what the
//! server has not acknowledged, in `runs/log-batch` requests within the server's limits. When the
//! server is down or slow, training goes on, the events wait on disk, and the thread retries with
//! a growing pause; at the end it keeps trying for a while, and `metakd tracking sync` sends
//! whatever is still queued later. The MLflow run is created when the server first answers, and
//! a resumed training run continues the same MLflow run.

pub mod client;
pub mod queue;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use client::{
    KeyValue, Metric, MlflowClient, RunInfo, MAX_BATCH_ENTITIES, MAX_BATCH_METRICS,
    MAX_BATCH_PARAMS,
};
use metakd_data::files::write_atomic;
use queue::{Event, EventQueue};

/// Folder of the tracking queue inside a run folder.
pub const TRACKING_DIR: &str = "tracking";
/// The MLflow run a training run logs to, inside [`TRACKING_DIR`].
const RUN_FILE: &str = "run.json";
/// The count of events that could not be queued (a full disk) and never reached the server,
/// inside [`TRACKING_DIR`].
const LOST_FILE: &str = "lost";
/// Longest pause between attempts to reach the server.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// Events read from the queue per round of sending.
const EVENTS_PER_ROUND: usize = 2000;

/// Where and how to track.
#[derive(Debug, Clone)]
pub struct TrackingOptions {
    /// The server (`http://host:port`).
    pub uri: String,
    /// MLflow experiment name.
    pub experiment: String,
    /// MLflow run name.
    pub run_name: String,
    /// Time limit of one request.
    pub request_timeout: Duration,
    /// How long the end of training waits for queued events to reach the server.
    pub flush_timeout: Duration,
}

/// The MLflow run of a training run, as saved in its tracking folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrackedRun {
    uri: String,
    experiment_id: String,
    run_id: String,
    artifact_uri: String,
}

/// What reached the server by the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackingReport {
    /// The MLflow run id, once the server has answered.
    pub run_id: Option<String>,
    /// Events the server acknowledged.
    pub sent: usize,
    /// Events still queued on disk.
    pub pending: usize,
    /// Events that could not be written to the queue (a full disk) and are lost.
    pub lost: usize,
}

/// The run configuration (TOML text) as MLflow params: one per value, named by its dotted path
/// (`train.lr`); lists are written as TOML.
pub fn config_params(config: &str) -> Result<Vec<KeyValue>> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<KeyValue>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, value, out);
                }
            }
            toml::Value::String(s) => out.push(KeyValue {
                key: prefix.to_owned(),
                value: s.clone(),
            }),
            other => out.push(KeyValue {
                key: prefix.to_owned(),
                value: other.to_string(),
            }),
        }
    }
    let value: toml::Value = toml::from_str(config).context("the configuration is not TOML")?;
    let mut out = Vec::new();
    flatten("", &value, &mut out);
    Ok(out)
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The queue of one run folder and the server it goes to.
struct Outbox {
    options: TrackingOptions,
    client: MlflowClient,
    queue: EventQueue,
    dir: PathBuf,
    run: Option<TrackedRun>,
    /// Metrics of iterations up to this one are queued already (by the run before a resume) and
    /// are not queued again.
    queued_through: Option<i64>,
    /// Events that could not be appended to the queue yet.
    unqueued: Vec<Event>,
    /// The last append failed.
    append_failing: bool,
}

impl Outbox {
    fn new(run_dir: &Path, options: TrackingOptions) -> Result<Self> {
        let dir = run_dir.join(TRACKING_DIR);
        let queue = EventQueue::new(&dir)?;
        let run = std::fs::read(dir.join(RUN_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<TrackedRun>(&bytes).ok())
            .filter(|run| run.uri == options.uri);
        Ok(Self {
            client: MlflowClient::new(&options.uri, options.request_timeout)?,
            options,
            queued_through: queue.last_metric_step()?,
            queue,
            dir,
            run,
            unqueued: Vec::new(),
            append_failing: false,
        })
    }

    /// Appends `incoming` (and whatever earlier appends left) to the queue, leaving out the
    /// metrics of iterations queued before a resume. A failed append keeps the events in memory
    /// for the next try and is reported once per failure streak.
    fn enqueue(&mut self, incoming: Vec<Event>) {
        let through = self.queued_through;
        self.unqueued
            .extend(incoming.into_iter().filter(|event| match (event, through) {
                (Event::Metrics { metrics }, Some(through)) => {
                    metrics.iter().any(|m| m.step > through)
                }
                _ => true,
            }));
        if self.unqueued.is_empty() {
            return;
        }
        match self.queue.append(&self.unqueued) {
            Ok(()) => {
                if self.append_failing {
                    tracing::info!("tracking: the queue is written again");
                }
                self.unqueued.clear();
                self.append_failing = false;
            }
            Err(e) => {
                if !self.append_failing {
                    tracing::error!(
                        "tracking: {e:#}; the events are held in memory and retried, and are \
                         lost if the run ends before they can be written"
                    );
                }
                self.append_failing = true;
            }
        }
    }

    /// Records the events never written as lost, so that `tracking sync` states it.
    fn record_lost(&self) -> usize {
        let lost = self.unqueued.len() + self.lost_before();
        if lost > 0 {
            if let Err(e) = write_atomic(&self.dir.join(LOST_FILE), lost.to_string().as_bytes()) {
                tracing::error!("tracking: {lost} events are lost, and so is their count: {e:#}");
            }
        }
        lost
    }

    /// Events an earlier process of this run recorded as lost.
    fn lost_before(&self) -> usize {
        std::fs::read_to_string(self.dir.join(LOST_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The MLflow run, created on first contact.
    fn run(&mut self) -> Result<TrackedRun> {
        if let Some(run) = &self.run {
            return Ok(run.clone());
        }
        let experiment_id = self.client.experiment_id(&self.options.experiment)?;
        let tags = [KeyValue {
            key: "mlflow.source.name".into(),
            value: "metakd train".into(),
        }];
        let RunInfo {
            run_id,
            artifact_uri,
        } = self
            .client
            .create_run(&experiment_id, &self.options.run_name, now_millis(), &tags)?;
        let run = TrackedRun {
            uri: self.options.uri.clone(),
            experiment_id,
            run_id,
            artifact_uri,
        };
        write_atomic(&self.dir.join(RUN_FILE), &serde_json::to_vec_pretty(&run)?)?;
        self.run = Some(run.clone());
        Ok(run)
    }

    /// Sends every queued event; stops at the first failure (the rest stays queued).
    fn send_pending(&mut self) -> Result<()> {
        loop {
            let pending = self.queue.pending(EVENTS_PER_ROUND)?;
            if pending.is_empty() {
                return Ok(());
            }
            let run = self.run()?;
            let (mut metrics, mut params) = (Vec::new(), Vec::new());
            let mut batched_up_to = None;
            for (index, event) in pending {
                let (m, p) = (metrics.len(), params.len());
                let fits = |more_m: usize, more_p: usize| {
                    m + more_m <= MAX_BATCH_METRICS
                        && p + more_p <= MAX_BATCH_PARAMS
                        && m + p + more_m + more_p <= MAX_BATCH_ENTITIES
                };
                match event {
                    Event::Metrics { metrics: new } if fits(new.len(), 0) => metrics.extend(new),
                    Event::Params { params: new } if fits(0, new.len()) => params.extend(new),
                    Event::Metrics { .. } | Event::Params { .. } => break,
                    other => {
                        if batched_up_to.is_some() {
                            break;
                        }
                        self.send_single(&run, other)?;
                        self.queue.mark_sent(index + 1)?;
                        continue;
                    }
                }
                batched_up_to = Some(index);
            }
            if let Some(last) = batched_up_to {
                self.client.log_batch(&run.run_id, &metrics, &params, &[])?;
                self.queue.mark_sent(last + 1)?;
            }
        }
    }

    fn send_single(&self, run: &TrackedRun, event: Event) -> Result<()> {
        match event {
            Event::Artifact { path } => {
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{}: no file name", path.display()))?;
                match std::fs::read(&path) {
                    Ok(bytes) => self.client.upload_artifact(&run.artifact_uri, name, bytes),
                    Err(e) => {
                        // A file removed since cannot be sent later either.
                        tracing::warn!("tracking: {} not uploaded: {e}", path.display());
                        Ok(())
                    }
                }
            }
            Event::End { status, end_time } => self.client.end_run(&run.run_id, &status, end_time),
            Event::Metrics { .. } | Event::Params { .. } => unreachable!("batched"),
        }
    }

    /// The report at the end of the run, with the events that could not be queued recorded as
    /// lost.
    fn finish(&self) -> Result<TrackingReport> {
        self.record_lost();
        self.report()
    }

    fn report(&self) -> Result<TrackingReport> {
        let sent = self.queue.sent()?;
        Ok(TrackingReport {
            run_id: self.run.as_ref().map(|r| r.run_id.clone()),
            sent,
            pending: self.queue.pending(usize::MAX)?.len(),
            lost: self.unqueued.len() + self.lost_before(),
        })
    }
}

enum Message {
    Events(Vec<Event>),
    Finish,
}

/// The background tracker of one training run.
pub struct Tracker {
    sender: Sender<Message>,
    worker: Option<JoinHandle<Result<TrackingReport>>>,
}

impl Tracker {
    /// Starts tracking the run in `run_dir` (continuing its MLflow run if it has one).
    pub fn start(run_dir: &Path, options: TrackingOptions) -> Result<Self> {
        let flush_timeout = options.flush_timeout;
        let mut outbox = Outbox::new(run_dir, options)?;
        let (sender, receiver) = channel();
        let worker = std::thread::spawn(move || work(&mut outbox, &receiver, flush_timeout));
        Ok(Self {
            sender,
            worker: Some(worker),
        })
    }

    fn send(&self, events: Vec<Event>) {
        // The worker only stops after `finish`; a send cannot fail before.
        let _ = self.sender.send(Message::Events(events));
    }

    /// Logs parameters (in groups within the per-request limit).
    pub fn log_params(&self, params: Vec<KeyValue>) {
        let events = params
            .chunks(MAX_BATCH_PARAMS)
            .map(|c| Event::Params { params: c.to_vec() })
            .collect();
        self.send(events);
    }

    /// Logs metric values of training iteration `step`.
    pub fn log_metrics(&self, step: usize, values: &[(String, f64)]) {
        let timestamp = now_millis();
        let metrics: Vec<Metric> = values
            .iter()
            .map(|(key, value)| Metric {
                key: key.clone(),
                value: *value,
                timestamp,
                step: step as i64,
            })
            .collect();
        let events = metrics
            .chunks(MAX_BATCH_METRICS)
            .map(|c| Event::Metrics {
                metrics: c.to_vec(),
            })
            .collect();
        self.send(events);
    }

    /// Uploads a file of the run folder.
    pub fn log_artifact(&self, path: &Path) {
        self.send(vec![Event::Artifact {
            path: path.to_owned(),
        }]);
    }

    /// Marks the run ended with `status` and waits (up to the flush timeout) for the queue to
    /// reach the server.
    pub fn finish(mut self, status: &str) -> Result<TrackingReport> {
        self.send(vec![Event::End {
            status: status.to_owned(),
            end_time: now_millis(),
        }]);
        let _ = self.sender.send(Message::Finish);
        self.worker
            .take()
            .expect("finished once")
            .join()
            .map_err(|_| anyhow::anyhow!("the tracking thread panicked"))?
    }
}

/// The worker: queue what arrives, send what is queued, retry after failures.
fn work(
    outbox: &mut Outbox,
    receiver: &Receiver<Message>,
    flush_timeout: Duration,
) -> Result<TrackingReport> {
    let mut pause = Duration::from_millis(500);
    let mut next_attempt = Instant::now();
    let mut finishing: Option<Instant> = None;
    let mut failing = false;
    loop {
        let mut incoming = Vec::new();
        match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Events(e)) => incoming.extend(e),
            Ok(Message::Finish) | Err(RecvTimeoutError::Disconnected) => {
                finishing.get_or_insert_with(Instant::now);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        while let Ok(message) = receiver.try_recv() {
            match message {
                Message::Events(e) => incoming.extend(e),
                Message::Finish => {
                    finishing.get_or_insert_with(Instant::now);
                }
            }
        }
        outbox.enqueue(incoming);
        if Instant::now() >= next_attempt {
            match outbox.send_pending() {
                Ok(()) => {
                    if failing {
                        tracing::info!(
                            "tracking: the server at {} answers again",
                            outbox.options.uri
                        );
                    }
                    failing = false;
                    pause = Duration::from_millis(500);
                    if finishing.is_some() && outbox.unqueued.is_empty() {
                        return outbox.finish();
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("tracking: {e:#}; events wait in the run folder and are sent when the server answers");
                    }
                    failing = true;
                    next_attempt = Instant::now() + pause;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    // Nothing listens at the address: waiting out the flush timeout would not
                    // help; the queue is sent later by `metakd tracking sync`.
                    if finishing.is_some() && MlflowClient::unreachable(&e) {
                        return outbox.finish();
                    }
                }
            }
        }
        if let Some(since) = finishing {
            if since.elapsed() >= flush_timeout {
                return outbox.finish();
            }
        }
    }
}

/// The server the run folder `run_dir` was tracked on, as recorded when it first answered.
pub fn recorded_uri(run_dir: &Path) -> Option<String> {
    let bytes = std::fs::read(run_dir.join(TRACKING_DIR).join(RUN_FILE)).ok()?;
    serde_json::from_slice::<TrackedRun>(&bytes)
        .ok()
        .map(|r| r.uri)
}

/// Sends what a finished run folder still has queued (to the server it was tracked on, or to
/// `options.uri` when it never reached one). Events the run lost (a full disk) make it an error
/// once the rest is sent: the MLflow run is incomplete.
pub fn sync(run_dir: &Path, options: TrackingOptions) -> Result<TrackingReport> {
    let dir = run_dir.join(TRACKING_DIR);
    if !dir.join("events.jsonl").is_file() {
        anyhow::bail!(
            "{}: no tracking queue; the run in {} was not tracked",
            dir.display(),
            run_dir.display()
        )
    }
    let mut outbox = Outbox::new(run_dir, options)?;
    outbox.send_pending()?;
    let report = outbox.report()?;
    if report.lost > 0 {
        anyhow::bail!(
            "{}: the queue is sent ({} events), but {} events of this run could not be written \
             to it (the disk was full) and never reached the server: the MLflow run lacks them",
            dir.display(),
            report.sent,
            report.lost
        )
    }
    Ok(report)
}
