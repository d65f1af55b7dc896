#!/usr/bin/env python3
"""Checks through MLflow's REST API that a tracked `metakd train` run arrived whole.

    python3 tools/check_mlflow.py --uri http://127.0.0.1:5000 --run-dir runs/x --iterations 40

Reads the MLflow run id from RUN_DIR/tracking/run.json and checks: the run is FINISHED; the
configuration's params are there (`train.iterations` equal to ITERATIONS); every tracked metric
has a value for each step 0..ITERATIONS-1; the config, split, log and model files are among the
run's artifacts; and nothing is left in the run folder's queue. Exits non-zero with the
first problem found. Standard library only.
"""
import argparse
import json
import pathlib
import sys
import urllib.parse
import urllib.request

METRICS = ["loss", "dice_loss", "bce_loss", "kd_loss", "lr", "data_wait_fraction",
           "omega_flair", "omega_t1", "omega_t1ce", "omega_t2"]
ARTIFACTS = {"config.toml", "split.json", "train_log.parquet", "meta_log.parquet",
             "model.safetensors"}


def get(uri, endpoint, **query):
    url = f"{uri}/api/2.0/{endpoint}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def fail(message):
    print(f"check_mlflow: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--run-dir", required=True, type=pathlib.Path)
    parser.add_argument("--iterations", required=True, type=int)
    args = parser.parse_args()

    tracking = args.run_dir / "tracking"
    run_id = json.loads((tracking / "run.json").read_text())["run_id"]
    run = get(args.uri, "mlflow/runs/get", run_id=run_id)["run"]
    if run["info"]["status"] != "FINISHED":
        fail(f"run {run_id} is {run['info']['status']}")
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    if params.get("train.iterations") != str(args.iterations):
        fail(f"param train.iterations is {params.get('train.iterations')!r}")
    if "model.parameters" not in params or len(params) < 40:
        fail(f"only {len(params)} params arrived")
    for key in METRICS:
        history = []
        token = None
        while True:
            query = {"run_id": run_id, "metric_key": key, "max_results": 25000}
            if token:
                query["page_token"] = token
            page = get(args.uri, "mlflow/metrics/get-history", **query)
            history += page.get("metrics", [])
            token = page.get("next_page_token")
            if not token:
                break
        steps = sorted({m["step"] for m in history})
        if steps != list(range(args.iterations)):
            fail(f"metric {key}: {len(steps)} distinct steps, expected {args.iterations}")
    artifacts = get(args.uri, "mlflow-artifacts/artifacts",
                    path=run["info"]["artifact_uri"].split(":", 1)[1].lstrip("/"))
    names = {f["path"] for f in artifacts.get("files", [])}
    if not ARTIFACTS <= names:
        fail(f"artifacts {sorted(names)} lack {sorted(ARTIFACTS - names)}")
    sent = int((tracking / "sent").read_text())
    queued = sum(1 for _ in (tracking / "events.jsonl").open())
    if sent != queued:
        fail(f"{queued - sent} events still queued")
    print(f"check_mlflow: run {run_id}: {len(params)} params, {len(METRICS)} metrics x "
          f"{args.iterations} steps, artifacts {sorted(names)}")


if __name__ == "__main__":
    main()
