"""Start ``deepspeed`` jobs from tests: free ports, own session, killing every worker by PID, and the short
training runs the tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from affectgpt.net import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRAIN = "launcher/train.py"
STEPS = 12  # Stage 1 steps of the shared run (fixture ``stage1``); checkpoints every 4


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    e["OMP_NUM_THREADS"] = "1"
    return e


def deepspeed_cmd(script: str, config: Path, *overrides: str, ranks: int = 2, port: int | None = None,
                  launcher_args: tuple[str, ...] = ()) -> list[str]:
    return [str(BIN / "deepspeed"), "--num_gpus", str(ranks), "--master_port", str(port or free_port()),
            *launcher_args, script, "--config", str(config), *overrides]


def start(cmd: list[str], log: Path, preexec_fn=None) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=preexec_fn)


def run(cmd: list[str], log: Path, timeout: float = 120, preexec_fn=None) -> int:
    proc = start(cmd, log, preexec_fn)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc, signal.SIGKILL)
        raise AssertionError(f"{' '.join(cmd)} timed out; log:\n{log.read_text()[-3000:]}") from None


def kill_tree(proc: subprocess.Popen, sig: int) -> None:
    """Signal the launcher and every descendant by PID (workers may sit in their own process groups)."""
    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=60)


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before the condition held")
        time.sleep(interval)
    raise AssertionError("timed out waiting for the condition")


def overrides(recipe: Path, shards: Path, ckpt: Path, *extra: str) -> list[str]:
    """A short Stage 1/2 run: 2 ranks x micro-batch 1 x 2 accumulation steps = 4 samples per step."""
    return [f"model.recipe={recipe}", f"data.shards={shards}", f"checkpoint.dir={ckpt}", f"max_steps={STEPS}",
            "checkpoint.every=4", "log_every=2", "global_batch_size=4", "micro_batch_size=1",
            "optim.warmup_steps=2", "optim.lr=3e-3", *extra]


def stage1_cmd(recipe: Path, shards: dict[str, Path], ckpt: Path, *extra: str, ranks: int = 2) -> list[str]:
    return deepspeed_cmd(TRAIN, ROOT / "configs" / "stage1.yaml", *overrides(recipe, shards["coarse"], ckpt, *extra),
                         ranks=ranks)


def kill9_and_resume(cmd: list[str], ckpt: Path, tmp: Path, final_step: int = STEPS) -> None:
    """Start ``cmd``, SIGKILL every process of it once a checkpoint exists, rerun it to the end; asserts that
    the rerun resumed from the checkpoint the killed run left."""
    proc = start(cmd, tmp / "killed.txt")
    wait_for(lambda: (ckpt / "latest").exists(), timeout=300, proc=proc)
    kill_tree(proc, signal.SIGKILL)
    killed_at = (ckpt / "latest").read_text().strip()
    assert killed_at != f"step_{final_step:08d}", "the run finished before it could be killed"
    assert run(cmd, tmp / "resumed.txt", timeout=300) == 0, (tmp / "resumed.txt").read_text()[-4000:]
    assert f"resuming from {ckpt / killed_at}" in (tmp / "resumed.txt").read_text()


def consolidated(ckpt: Path, step: int = STEPS):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag=f"step_{step:08d}")
