//! The MLflow tracking server's REST API (`/api/2.0/mlflow/…` and the proxied artifact store
//! `/api/2.0/mlflow-artifacts/…`), with reqwest.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Most metrics one `runs/log-batch` request may carry.
pub const MAX_BATCH_METRICS: usize = 1000;
/// Most params one `runs/log-batch` request may carry.
pub const MAX_BATCH_PARAMS: usize = 100;
/// Most tags one `runs/log-batch` request may carry.
pub const MAX_BATCH_TAGS: usize = 100;
/// Most metrics, params and tags together in one `runs/log-batch` request.
pub const MAX_BATCH_ENTITIES: usize = 1000;

/// One metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Name.
    pub key: String,
    /// Value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Training iteration.
    pub step: i64,
}

/// A key and its value (a param or a tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// What the server says of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id.
    pub run_id: String,
    /// Where its artifacts go (`mlflow-artifacts:/…` for a server that serves artifacts).
    pub artifact_uri: String,
}

/// A client of one tracking server.
#[derive(Debug, Clone)]
pub struct MlflowClient {
    base: String,
    http: reqwest::blocking::Client,
}

impl MlflowClient {
    /// A client of the server at `uri` (`http://host:port`); every request gives up after
    /// `timeout`.
    pub fn new(uri: &str, timeout: Duration) -> Result<Self> {
        check_uri(uri)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: uri.trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Whether `error` (of a request) means the server could not be reached at all, as opposed
    /// to a server that answered with an error or too slowly.
    pub fn unreachable(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| {
            cause
                .downcast_ref::<reqwest::Error>()
                .is_some_and(|e| e.is_connect())
        })
    }

    fn check(response: reqwest::blocking::Response, what: &str) -> Result<Value> {
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: HTTP {status}: {text}")
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
    }

    fn post(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{endpoint}", self.base);
        let response = self
            .http
            .post(&url)
            .json(body)
            .send()
            .with_context(|| format!("POST {url}"))?;
        Self::check(response, &format!("POST {url}"))
    }

    /// The id of experiment `name`, created if it does not exist.
    pub fn experiment_id(&self, name: &str) -> Result<String> {
        let url = format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base);
        let response = self
            .http
            .get(&url)
            .query(&[("experiment_name", name)])
            .send()
            .with_context(|| format!("GET {url}"))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            let created = self.post("experiments/create", &json!({ "name": name }))?;
            return created["experiment_id"]
                .as_str()
                .map(str::to_owned)
                .context("experiments/create returned no experiment_id");
        }
        let found = Self::check(response, &format!("GET {url}"))?;
        found["experiment"]["experiment_id"]
            .as_str()
            .map(str::to_owned)
            .context("experiments/get-by-name returned no experiment_id")
    }

    /// Creates a run named `name` in `experiment_id`, started at `start_time` (ms).
    pub fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo> {
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": name,
            "start_time": start_time,
            "tags": tags,
        });
        let created = self.post("runs/create", &body)?;
        serde_json::from_value(created["run"]["info"].clone())
            .context("runs/create returned no run info")
    }

    /// Logs metrics, params and tags in one `runs/log-batch` request (within its limits).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        if metrics.len() > MAX_BATCH_METRICS
            || params.len() > MAX_BATCH_PARAMS
            || tags.len() > MAX_BATCH_TAGS
            || metrics.len() + params.len() + tags.len() > MAX_BATCH_ENTITIES
        {
            bail!(
                "log-batch of {} metrics, {} params, {} tags exceeds the server's limits",
                metrics.len(),
                params.len(),
                tags.len()
            )
        }
        let body = json!({ "run_id": run_id, "metrics": metrics, "params": params, "tags": tags });
        self.post("runs/log-batch", &body).map(|_| ())
    }

    /// Sets the run's status (`FINISHED`, `FAILED`, `KILLED`) and end time (ms).
    pub fn end_run(&self, run_id: &str, status: &str, end_time: i64) -> Result<()> {
        let body = json!({ "run_id": run_id, "status": status, "end_time": end_time });
        self.post("runs/update", &body).map(|_| ())
    }

    /// Uploads `bytes` as the artifact `name` of a run whose artifact URI is `artifact_uri`
    /// (the server must serve artifacts: `mlflow-artifacts:/…`).
    pub fn upload_artifact(&self, artifact_uri: &str, name: &str, bytes: Vec<u8>) -> Result<()> {
        let Some(path) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            bail!("artifact store {artifact_uri} is not served by the tracking server")
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}",
            self.base,
            path.trim_start_matches('/')
        );
        let response = self
            .http
            .put(&url)
            .body(bytes)
            .send()
            .with_context(|| format!("PUT {url}"))?;
        Self::check(response, &format!("PUT {url}")).map(|_| ())
    }
}

/// Refuses an address that is no MLflow server's: it must be `http://` or `https://` with a host.
pub fn check_uri(uri: &str) -> Result<()> {
    let url = reqwest::Url::parse(uri).with_context(|| {
        format!("tracking URI {uri:?}: not an address (expected http://host:port)")
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        bail!(
            "tracking URI {uri:?}: an MLflow server is reached over http:// or https:// with a host \
             (expected http://host:port)"
        )
    }
    Ok(())
}
