"""Screenshots of a study's MLflow store as the MLflow UI shows it, in a real browser (README's images).

  python scripts/mlflow_screenshots.py --store work/demo --experiment demo --out docs/img

Starts the project's ``mlflow server`` (``.venv``) on the store as ``make mlflow-ui`` does (loopback, a free
port), opens the experiment's runs page in headless Chromium with the evaluation runs filtered (``tags.kind =
'eval'``), best first, and the columns a reader compares (tags backbone, init, selection; the headline metrics
beside their 95 % bounds), then the training runs' loss curves in one chart; then stops the server.

Not a project dependency: it needs Playwright for Python in whatever environment runs it (``pip install
playwright``) and a Chromium (``--chromium``, default ``/usr/bin/chromium``, Debian's ``apt install
chromium``), since no browser download is possible offline. The UI keeps its view (filter, sort, columns) in the
browser's local storage, not in the store: the script sets it there, as a user's clicks would.
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
METRICS = ("eval/avg", "eval/avg_lo", "eval/avg_hi", "eval/wheel_f1", "eval/wheel_f1_lo", "eval/wheel_f1_hi")


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


def api(base: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def run_ids(base: str, exp: str, filter_string: str) -> list[str]:
    body = {"experiment_ids": [exp], "filter": filter_string, "max_results": 1000}
    return [r["info"]["run_id"] for r in api(base, "runs/search", body).get("runs", [])]


def page_state(exp: str, search: str, order_by: str, expanded: list[str]) -> dict[str, str]:
    """The browser storage the UI keeps its view in: model-training mode, the assistant closed, and the runs
    page's filter, sort, columns and expanded parent runs (Stage 2 runs are Stage 1's children)."""
    columns = [*(f"tags.`{t}`" for t in TAGS), *(f"metrics.`{m}`" for m in METRICS), "attributes.`Dataset`"]
    view = {"searchFilter": search, "orderByKey": order_by, "orderByAsc": False, "startTime": "ALL",
            "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
            "selectedColumns": columns, "columnOrder": [], "runsPinned": [], "runsHidden": [],
            "columnWidths": {"tags.`init`": 170, "tags.`selection`": 170}, "runsVisibilityMap": {},
            "runsExpanded": dict.fromkeys(expanded, True), "runsHiddenMode": "FIRST_10_RUNS",
            "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
            "useGroupedValuesInCharts": True, "hideEmptyCharts": True, "groupBy": None, "groupsExpanded": {},
            "autoRefreshEnabled": False,
            "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""}}
    return {f'MLflowLocalStorage-1.1-ExperimentPage-["{exp}"]-ReactComponentState': json.dumps(view),
            "mlflow.workflowType_v1": '"machine_learning"', "mlflow.assistant.panelOpen_v1": "false",
            "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true"}


def shoot(base: str, exp: str, out: Path, chromium: str) -> None:
    """mlflow-eval-runs.png: the evaluation runs, best first, with backbone, init, selection and the headline
    metrics beside their 95 % bounds; mlflow-train-loss.png: every training run's loss in one chart."""
    from playwright.sync_api import sync_playwright

    stage1 = run_ids(base, exp, "tags.stage = '1'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 2000, "height": 300})
        storage = page_state(exp, "tags.kind = 'eval'", "metrics.`eval/avg`", stage1)
        context.add_init_script(f"(() => {{ const s = {json.dumps(storage)}; "
                                "for (const k in s) localStorage.setItem(k, s[k]); })()")
        page = context.new_page()
        n_eval = len(run_ids(base, exp, "tags.kind = 'eval'"))
        page.set_viewport_size({"width": 2000, "height": 300 + 32 * n_eval})
        page.goto(f"{base}/#/experiments/{exp}/runs", wait_until="load", timeout=120_000)
        page.get_by_text(f"{n_eval} matching runs").wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(out / "mlflow-eval-runs.png"))
        log.info("wrote %s", out / "mlflow-eval-runs.png")

        page.set_viewport_size({"width": 1700, "height": 1100})
        query = urllib.parse.urlencode({"searchFilter": "tags.kind = 'train'", "orderByKey": "attributes.start_time",
                                        "orderByAsc": "false", "startTime": "ALL"})
        page.goto(f"{base}/#/experiments/{exp}/runs?{query}", wait_until="load", timeout=120_000)
        page.wait_for_timeout(3000)
        page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
        page.wait_for_timeout(4000)
        page.get_by_placeholder("Search metric charts").fill("train/loss")
        page.wait_for_timeout(2000)
        page.locator("[data-component-id*=fullscreen], button[aria-label*=ullscreen]").first.click()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "mlflow-train-loss.png"))
        log.info("wrote %s", out / "mlflow-train-loss.png")
        browser.close()


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
        name = urllib.parse.quote(args.experiment)
        shoot(base, api(base, f"experiments/get-by-name?experiment_name={name}")["experiment"]["experiment_id"],
              args.out, args.chromium)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
