//! The on-disk queue of tracking events: one JSON line per event, appended as training produces
//! them, and a counter of the lines the server has acknowledged (written atomically). Whatever
//! has not reached the server survives a server outage, a crash of the run, or its end.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::client::{KeyValue, Metric};
use metakd_data::files::write_atomic;

/// One thing to tell the tracking server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Run parameters.
    Params {
        /// The parameters.
        params: Vec<KeyValue>,
    },
    /// Metric values.
    Metrics {
        /// The values.
        metrics: Vec<Metric>,
    },
    /// A file of the run folder to upload.
    Artifact {
        /// The file.
        path: PathBuf,
    },
    /// The run ended.
    End {
        /// `FINISHED`, `FAILED` or `KILLED`.
        status: String,
        /// Milliseconds since the Unix epoch.
        end_time: i64,
    },
}

/// The queue files in a run's tracking folder.
#[derive(Debug, Clone)]
pub struct EventQueue {
    events: PathBuf,
    sent: PathBuf,
}

impl EventQueue {
    /// The queue kept in `dir` (`events.jsonl` and `sent`). A last line cut short by a crash is
    /// dropped, so that later events follow whole lines.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the tracking folder", dir.display()))?;
        let queue = Self {
            events: dir.join("events.jsonl"),
            sent: dir.join("sent"),
        };
        if let Ok(bytes) = std::fs::read(&queue.events) {
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                let file = OpenOptions::new()
                    .write(true)
                    .open(&queue.events)
                    .with_context(|| format!("{}: cannot open", queue.events.display()))?;
                file.set_len(whole as u64)
                    .with_context(|| format!("{}: cannot repair", queue.events.display()))?;
            }
        }
        Ok(queue)
    }

    /// Appends events, all or none: a write that fails part-way (a full disk) is cut back, so
    /// the queue never holds a partial line and the events can be appended again.
    pub fn append(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.events)
            .with_context(|| format!("{}: cannot open", self.events.display()))?;
        let mut text = String::new();
        for event in events {
            text.push_str(&serde_json::to_string(event)?);
            text.push('\n');
        }
        let before = file
            .metadata()
            .with_context(|| format!("{}: cannot read", self.events.display()))?
            .len();
        if let Err(e) = file.write_all(text.as_bytes()).and_then(|_| file.flush()) {
            let _ = file.set_len(before);
            return Err(e).with_context(|| {
                format!(
                    "{}: cannot append {} tracking events",
                    self.events.display(),
                    events.len()
                )
            });
        }
        Ok(())
    }

    /// The last training iteration whose metrics are queued (sent or not), if any.
    pub fn last_metric_step(&self) -> Result<Option<i64>> {
        let file = match File::open(&self.events) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", self.events.display()))
            }
        };
        let mut last = None;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("{}: cannot read", self.events.display()))?;
            if let Ok(Event::Metrics { metrics }) = serde_json::from_str(&line) {
                last = metrics.iter().map(|m| m.step).chain(last).max();
            }
        }
        Ok(last)
    }

    /// Number of events the server has acknowledged.
    pub fn sent(&self) -> Result<usize> {
        match std::fs::read_to_string(&self.sent) {
            Ok(text) => text
                .trim()
                .parse()
                .with_context(|| format!("{}: not a count", self.sent.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", self.sent.display())),
        }
    }

    /// Records that the first `count` events have reached the server.
    pub fn mark_sent(&self, count: usize) -> Result<()> {
        Ok(write_atomic(&self.sent, count.to_string().as_bytes())?)
    }

    /// Up to `limit` events not yet acknowledged, with their positions. A line cut short by a
    /// crash while it was written is the queue's end.
    pub fn pending(&self, limit: usize) -> Result<Vec<(usize, Event)>> {
        let sent = self.sent()?;
        let file = match File::open(&self.events) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", self.events.display()))
            }
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate().skip(sent) {
            let line = line.with_context(|| format!("{}: cannot read", self.events.display()))?;
            let Ok(event) = serde_json::from_str(&line) else {
                break;
            };
            out.push((i, event));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(t: i64) -> Event {
        Event::End {
            status: "FINISHED".into(),
            end_time: t,
        }
    }

    #[test]
    fn a_line_cut_short_by_a_crash_is_dropped_and_later_events_follow() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EventQueue::new(dir.path()).unwrap();
        queue.append(&[end(1), end(2)]).unwrap();
        // A crash in the middle of the third line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("events.jsonl"))
            .unwrap();
        file.write_all(b"{\"kind\":\"end\",\"sta").unwrap();
        let queue = EventQueue::new(dir.path()).unwrap();
        queue.append(&[end(3)]).unwrap();
        queue.mark_sent(1).unwrap();
        let pending: Vec<Event> = queue
            .pending(10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(pending, vec![end(2), end(3)]);
        assert_eq!(queue.sent().unwrap(), 1);
    }

    #[test]
    fn the_last_queued_step_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EventQueue::new(dir.path()).unwrap();
        assert_eq!(queue.last_metric_step().unwrap(), None);
        let metric = |step| Event::Metrics {
            metrics: vec![Metric {
                key: "loss".into(),
                value: 1.0,
                timestamp: 0,
                step,
            }],
        };
        queue
            .append(&[metric(4), end(1), metric(7), metric(5)])
            .unwrap();
        assert_eq!(queue.last_metric_step().unwrap(), Some(7));
    }
}
