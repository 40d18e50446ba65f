"""Start or stop a local single-node Ray head (for `ray job submit`), bound to 127.0.0.1 only.

  affectgpt ray up [--dir work/ray] [--num-cpus N] [--dashboard-port 8265]
  affectgpt ray down [--dir work/ray]

`up` runs `ray start --head --block` in the background with its own temp dir (DIR/tmp) and its own free ports,
waits until both the jobs API and the head's job agent answer (a job submitted before the agent has
registered fails with "No available agent to submit job"), records the head in DIR/head.json and prints the
address to submit to. Its ports are drawn below the kernel's ephemeral range (see `affectgpt.net`).
The head's PATH starts with this Python's bin directory, so a job's `python -m ...` entrypoint runs in this
virtual environment. `down` stops exactly that head (SIGTERM to its `ray start --block` process, which stops
the Ray processes it started); it never runs `ray stop`, which would stop every Ray cluster of this user on
the machine.

SECURITY: the jobs API (the dashboard port) runs any code submitted to it, with no authentication. This head
binds it, and every other service it starts (GCS, raylet, agents, Ray Client server, workers), to 127.0.0.1;
never expose it beyond a trusted network (use an SSH tunnel to reach a remote cluster).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from affectgpt.net import free_ports

HELP = "start/stop a local Ray head on 127.0.0.1 for the pack job"
log = logging.getLogger(__name__)

HOST = "127.0.0.1"
HEAD_FILE = "head.json"


@dataclass(frozen=True)
class Head:
    pid: int  # the `ray start --block` process; stopping it stops the head
    dashboard_url: str  # what `ray job submit --address` takes
    gcs_address: str
    temp_dir: str
    log_file: str


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "down"], help="start or stop the head")
    p.add_argument("--dir", type=Path, default=Path("work/ray"), help="state, logs and temp dir (default: work/ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs the head offers (default: all)")
    p.add_argument("--dashboard-port", type=int, default=8265, help="jobs API port (default: 8265; 0 = any free)")


def run(args: argparse.Namespace) -> int:
    if args.action == "up":
        if (args.dir / HEAD_FILE).exists() and _alive(read_head(args.dir)):
            head = read_head(args.dir)
            print(f"already running: {head.dashboard_url}")
            return 0
        head = start_head(args.dir, num_cpus=args.num_cpus, dashboard_port=args.dashboard_port)[0]
        print(f"Ray head up: ray job submit --address {head.dashboard_url} --working-dir . -- python -m ...")
        return 0
    if not (args.dir / HEAD_FILE).exists():
        print(f"no head recorded in {args.dir / HEAD_FILE}; nothing to stop")
        return 0
    stop_head(read_head(args.dir))
    (args.dir / HEAD_FILE).unlink()
    print("Ray head stopped")
    return 0


def start_head(directory: Path, num_cpus: int | None = None, dashboard_port: int = 0,
               object_store_mb: int = 256, timeout: float = 90.0) -> tuple[Head, subprocess.Popen]:
    """Start a head in the background and wait until it accepts jobs; writes DIR/head.json."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ports = free_ports(9, HOST)
    dashboard_port = dashboard_port or ports[1]
    temp_dir = directory / "tmp"
    cmd = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", HOST, "--dashboard-host", HOST, "--include-dashboard", "true",
        "--port", str(ports[0]), "--dashboard-port", str(dashboard_port),
        "--dashboard-agent-listen-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
        "--metrics-export-port", str(ports[4]), "--node-manager-port", str(ports[5]),
        "--object-manager-port", str(ports[6]), "--runtime-env-agent-port", str(ports[7]),
        "--ray-client-server-port", str(ports[8]),
        "--temp-dir", str(temp_dir), "--object-store-memory", str(object_store_mb << 20),
    ]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    # Ray swaps a loopback --node-ip-address for the machine's address (so that other nodes could join), and
    # its services then listen there; single-node mode keeps 127.0.0.1, as Ray does by default on macOS.
    # Token authentication stays as RAY_AUTH_MODE says; unset, Ray would turn it on only when some earlier
    # local ray.init() left ~/.ray/auth_token behind, so the same command would behave differently per machine.
    env = {"RAY_AUTH_MODE": "disabled", **os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log_file = directory / "ray-start.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    head = Head(process.pid, f"http://{HOST}:{dashboard_port}", f"{HOST}:{ports[0]}", str(temp_dir), str(log_file))
    (directory / HEAD_FILE).write_text(json.dumps(asdict(head), indent=1))
    deadline = time.monotonic() + timeout
    agent_url = f"http://{HOST}:{ports[2]}"
    while not (_answers(f"{head.dashboard_url}/api/jobs/") and _answers(f"{agent_url}/api/healthz")):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_head(head)
            tail = log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Ray head did not accept jobs within {timeout:.0f} s (see {log_file} and the "
                               f"logs under {temp_dir}/session_latest/logs):\n{tail}")
        time.sleep(0.5)
    log.info("Ray head %s up (jobs API %s, temp dir %s)", head.gcs_address, head.dashboard_url, temp_dir)
    return head, process


def stop_head(head: Head, timeout: float = 60.0) -> None:
    """SIGTERM the head's `ray start --block` process and wait until its process group is gone."""
    if not _alive(head):
        return
    os.kill(head.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _group_alive(head.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(head.pid):
        log.warning("Ray head %s did not stop in %.0f s; killing its process group", head.gcs_address, timeout)
        os.killpg(head.pid, signal.SIGKILL)


def read_head(directory: Path) -> Head:
    return Head(**json.loads((directory / HEAD_FILE).read_text()))


def _alive(head: Head) -> bool:
    """True when ``head.pid`` is still this head's `ray start` (a recycled pid belongs to someone else)."""
    try:
        cmdline = Path(f"/proc/{head.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return head.temp_dir.encode() in cmdline


def _group_alive(pgid: int) -> bool:
    try:
        os.waitpid(pgid, os.WNOHANG)  # reap it if it is our child, so it does not linger as a zombie
    except ChildProcessError:
        pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(url: str) -> bool:
    """True when ``url`` answers 200. The job agent registers itself with the head right after its HTTP
    server starts, so its health check answering means the head can hand it a job."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.HTTPError as e:
        return e.code == 401  # up, and asking for the token (RAY_AUTH_MODE=token)
    except OSError:
        return False
