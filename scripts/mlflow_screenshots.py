"""Screenshots of a study's MLflow store as the MLflow UI shows it, in a real browser (README's images).

  python scripts/mlflow_screenshots.py --store work/demo --experiment demo --out docs/img

Starts the project's ``mlflow server`` (``.venv``) on the store as ``make mlflow-ui`` does (loopback, a free
port), opens the experiment's runs page in headless Chromium, filters the evaluation runs (``tags.kind =
'eval'``), shows the columns a reader compares (tags backbone, init, selection; the headline metrics with
their 95 % bounds) and takes the table, the chart view and one training run's metrics; then stops the server
by its PID.

Not a project dependency: it needs Playwright for Python in whatever environment runs it (``pip install
playwright``) and a Chromium (``--chromium``, default ``/usr/bin/chromium``, Debian's ``apt install
chromium``), since no browser download is possible offline. The columns are chosen by clicking, as a user
would: the UI keeps that choice in the browser, not in the store.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for affectgpt.net when run from Playwright's own environment
from affectgpt.net import free_port  # noqa: E402

log = logging.getLogger("mlflow_screenshots")
TAGS = ("backbone", "init", "selection")
METRICS = ("eval/avg", "eval/avg_lo", "eval/avg_hi", "eval/accuracy_s", "eval/recall_s", "eval/wheel_f1")


def start_server(store: Path, port: int) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv" / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{store.resolve() / 'mlflow.db'}",
           "--artifacts-destination", str(store.resolve() / "mlartifacts")]
    proc = subprocess.Popen(cmd, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError(f"mlflow server on port {port} did not answer within 180 s")


def experiment_id(base: str, name: str) -> str:
    url = f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name={urllib.parse.quote(name)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)["experiment"]["experiment_id"]


def shoot(base: str, exp: str, out: Path, chromium: str, train_run: str | None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1800, "height": 700})
        page.goto(f"{base}/#/experiments/{exp}/runs", wait_until="networkidle", timeout=120_000)
        page.get_by_role("button", name="Columns", exact=True).wait_for(timeout=60_000)
        page.get_by_role("button", name="Close").first.click()  # the assistant side panel
        page.get_by_role("button", name="Toggle sidebar").click()
        search = page.get_by_placeholder("metrics.rmse < 1 and params.model = \"tree\"")
        search.fill("tags.kind = 'eval'")
        search.press("Enter")
        page.wait_for_timeout(2000)
        page.get_by_role("button", name="Columns", exact=True).click()
        menu = page.get_by_role("dialog")
        for attribute in ("Source", "Models"):  # unchecks two default columns that stay empty here
            menu.get_by_text(attribute, exact=True).click()
        for name in (*TAGS, *METRICS):
            menu.get_by_text(name, exact=True).first.click()
        page.keyboard.press("Escape")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "mlflow-runs.png"))
        log.info("wrote %s", out / "mlflow-runs.png")

        page.locator("label:has(input[value='CHART'])").click()  # the chart view beside the table
        page.get_by_placeholder("Search metric charts").fill("eval/avg")
        page.wait_for_timeout(4000)
        page.screenshot(path=str(out / "mlflow-charts.png"), full_page=True)
        log.info("wrote %s", out / "mlflow-charts.png")

        if train_run:
            # a hash change of the same page: no new load to wait for, only the charts to draw
            page.goto(f"{base}/#/experiments/{exp}/runs/{train_run}/model-metrics", wait_until="commit")
            page.wait_for_timeout(8000)
            page.screenshot(path=str(out / "mlflow-stage1-metrics.png"))
            log.info("wrote %s", out / "mlflow-stage1-metrics.png")
        browser.close()


def first_stage1_run(base: str, exp: str) -> str | None:
    body = json.dumps({"experiment_ids": [exp], "filter": "tags.stage = '1'", "max_results": 1}).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/runs/search", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response).get("runs", [])
    return runs[0]["info"]["run_id"] if runs else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="directory with mlflow.db and mlartifacts/")
    p.add_argument("--experiment", default="demo", help="MLflow experiment (a study's name)")
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="where the PNGs go")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not (args.store / "mlflow.db").is_file():
        p.error(f"{args.store / 'mlflow.db'} does not exist")
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(args.store, port)
    try:
        base = f"http://127.0.0.1:{port}"
        exp = experiment_id(base, args.experiment)
        shoot(base, exp, args.out, args.chromium, first_stage1_run(base, exp))
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
