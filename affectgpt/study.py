"""A study: LLM backbones x initialisations x fine-tuning modes, each cell trained and evaluated as tracked
MLflow runs.

A cell is (backbone recipe, initialisation, finetune): ``<backbone>/<init>`` for full-parameter training,
``<backbone>/<init>/lora`` for LoRA (``finetunes: [full, lora]``; LoRA cells of a random-LLM initialisation
are left out, as LoRA freezes the LLM). Its steps run one after another as the user would run them:

    stage 1   deepspeed --module affectgpt.train --config <stage1> (coarse shards; skipped by "stage2-only")
    export    affectgpt export <stage1 checkpoints> --out <cell>/stage1/model   (in the study's process)
    stage 2   deepspeed --module affectgpt.train --config <stage2> (fine shards; from the stage 1 export or the base)
    export    affectgpt export <stage2 checkpoints> --out <cell>/stage2/model   (--best with select.rule=best-val)
    eval      affectgpt eval --model <cell>/stage2/model --shards <test shards>   -> an MLflow eval run

Resumable: a cell whose evaluation run is FINISHED in MLflow is skipped; within a cell, a step whose output
exists is skipped and an interrupted training stage resumes from its `latest` checkpoint (resume=auto).
Baselines ("most_frequent": a constant prediction of the most frequent training labels; "untrained": the base
model of each backbone) are scored by the same evaluation call, on the same split, into the same experiment.

Selection, then one test: with ``select.rule: best-val`` Stage 2 evaluates on the validation split
(``shards.val``) every ``select.every`` steps and the cell exports its best step by ``select.metric``; the test
split is scored once, on that export. Every evaluation run carries the rule as tag ``selection`` (``last`` or
``best-val:<metric>``) and the exported step as ``selected_step``, and ``affectgpt compare`` shows both.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from affectgpt.commands.eval import EvalCommandConfig
from affectgpt.config import save_config
from affectgpt.eval.generate import EvalConfig
from affectgpt.net import free_port
from affectgpt.tracking import TrackingConfig
from affectgpt.train.checkpoint import PROVENANCE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Init:
    stage1: bool  # run Stage 1 on the coarse split before Stage 2
    llm_init: str  # "pretrained" (the recipe's weights) or "random"


INITS: dict[str, Init] = {
    "stage1+stage2": Init(stage1=True, llm_init="pretrained"),
    "stage2-only": Init(stage1=False, llm_init="pretrained"),
    "random-llm+stage1+stage2": Init(stage1=True, llm_init="random"),
}
BASELINES = ("most_frequent", "untrained")
FINETUNES = ("full", "lora")


@dataclass
class ShardPaths:
    """The study's shard splits.

    coarse: Stage 1 training shards
    fine: Stage 2 training shards
    test: evaluation shards
    """

    coarse: Path
    fine: Path
    test: Path
    val: Path | None = None  # the validation split, for select.rule=best-val


@dataclass
class SelectSection:
    """Which Stage 2 checkpoint a cell evaluates on the test split."""

    rule: Literal["last", "best-val"] = "last"  # best-val: the best step on shards.val by eval/<metric>
    metric: str = "avg"
    every: int = 50  # steps between validation evaluations (generation settings: the eval section's)
    samples: int | None = None  # the first N validation samples; None: all


@dataclass
class LaunchSection:
    """How training stages are launched.

    nproc: processes per node (deepspeed --num_gpus; on CPU, the number of ranks)
    extra: more launcher flags, e.g. [--hostfile, hosts]
    """

    nproc: int = 2
    extra: list[str] = field(default_factory=list)


@dataclass
class StudyConfig:
    """Settings of ``affectgpt study`` (configs/studies/*.yaml).

    name: the study, also its MLflow experiment
    out: cells live in OUT/<backbone>/<init>/
    backbones: model recipes (configs/models/*.yaml)
    inits: initialisations (stage1+stage2, stage2-only, random-llm+stage1+stage2)
    baselines: baselines scored beside the cells (most_frequent, untrained)
    stage1: Stage 1 training config
    stage2: Stage 2 training config
    stage1_overrides: key=value overrides of every Stage 1 run
    stage2_overrides: key=value overrides of every Stage 2 run
    train_labels: CSV with the Stage 2 training labels, for the most-frequent baseline
    """

    name: str
    out: Path
    shards: ShardPaths = field(metadata={"flag_prefix": "shards-"})
    backbones: list[Path]
    inits: list[str] = field(default_factory=lambda: ["stage1+stage2", "stage2-only"])
    finetunes: list[str] = field(default_factory=lambda: ["full"])  # full and/or lora (the LLM's training)
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    stage1: Path = Path("configs/stage1.yaml")
    stage2: Path = Path("configs/stage2.yaml")
    stage1_overrides: list[str] = field(default_factory=list)
    stage2_overrides: list[str] = field(default_factory=list)
    launch: LaunchSection = field(default_factory=LaunchSection)
    eval: EvalConfig = field(default_factory=EvalConfig)  # how each cell and baseline is described and scored
    select: SelectSection = field(default_factory=SelectSection)
    train_labels: Path | None = None
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata={"flag_prefix": "tracking-"})

    def __post_init__(self) -> None:
        unknown = [i for i in self.inits if i not in INITS]
        if unknown:
            raise ValueError(f"unknown init(s) {unknown}; known: {', '.join(INITS)}")
        unknown = [f for f in self.finetunes if f not in FINETUNES]
        if unknown or not self.finetunes:
            raise ValueError(f"finetunes {self.finetunes}: list one or more of {', '.join(FINETUNES)}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}")
        if self.select.rule == "best-val" and self.shards.val is None:
            raise ValueError("select.rule=best-val needs shards.val (the validation split's shards)")
        if "most_frequent" in self.baselines and self.train_labels is None:
            raise ValueError("baseline most_frequent needs train_labels (the Stage 2 training CSV, e.g. fine.csv)")
        if not self.backbones:
            raise ValueError("backbones is empty: list model recipes (configs/models/*.yaml)")
        for recipe in self.backbones:
            if not Path(recipe).is_file():
                raise ValueError(f"backbones: recipe {recipe} does not exist")
        self.tracking.experiment = self.name


def backbone_name(recipe: Path) -> str:
    return Path(recipe).stem


def cells(cfg: StudyConfig) -> list[tuple[str, Path, str, str]]:
    """(cell name, recipe, init, finetune) of the grid, in run order."""
    grid = []
    for recipe in cfg.backbones:
        for init in cfg.inits:
            for finetune in cfg.finetunes:
                if finetune == "lora" and INITS[init].llm_init == "random":
                    continue  # LoRA trains adapters on a frozen LLM: a random one would stay random
                suffix = "" if finetune == "full" else f"/{finetune}"
                grid.append((f"{backbone_name(recipe)}/{init}{suffix}", recipe, init, finetune))
    return grid


class Study:
    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.uri = cfg.tracking.resolve_uri(cfg.out)
        self.bin = Path(sys.executable).parent

    # ---- the grid -------------------------------------------------------------------------------------------
    def run(self) -> dict[str, str]:
        """Run every cell; returns {cell: "done" | "skipped" | "failed: <step>"}."""
        results: dict[str, str] = {}
        for cell, recipe, init, finetune in cells(self.cfg):
            if self._finished(cell):
                log.info("cell %s: finished earlier, skipped", cell)
                results[cell] = "skipped"
                continue
            log.info("cell %s: starting", cell)
            try:
                self._cell(cell, recipe, init, finetune)
                results[cell] = "done"
            except StepFailed as e:
                log.error("cell %s: %s", cell, e)
                results[cell] = f"failed: {e.step}"
        return results

    def _finished(self, cell: str) -> bool:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        exp = client.get_experiment_by_name(self.cfg.name)
        if exp is None:
            return False
        runs = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.cell = '{cell}' and tags.kind = 'eval' and attributes.status = 'FINISHED'",
        )
        return bool(runs)

    # ---- one cell -------------------------------------------------------------------------------------------
    def _cell(self, cell: str, recipe: Path, init_name: str, finetune: str) -> None:
        init = INITS[init_name]
        root = self.cfg.out / cell
        tags = {"cell": cell, "backbone": backbone_name(recipe), "init": init_name, "finetune": finetune,
                "study": self.cfg.name}
        common = [f"model.recipe={recipe}", f"model.set.llm_init={init.llm_init}", f"finetune={finetune}",
                  *self._tracking_overrides(tags)]
        start_from = None
        if init.stage1:
            start_from = self._train_stage(root / "stage1", 1, self.cfg.stage1, self.cfg.shards.coarse,
                                           [*common, *self.cfg.stage1_overrides])
        stage2 = [*common, *self.cfg.stage2_overrides, f"init.from_model={start_from}" if start_from else
                  "init.from_model=null", *self._select_overrides()]
        model = self._train_stage(root / "stage2", 2, self.cfg.stage2, self.cfg.shards.fine, stage2,
                                  best=self.cfg.select.rule == "best-val")
        self._evaluate(tags, recipe, model, root / "eval")

    def _select_overrides(self) -> list[str]:
        """Stage 2's validation: the test evaluation's generation settings, so both score the same way."""
        s = self.cfg.select
        if s.rule == "last":
            return []
        return [f"eval.shards={self.cfg.shards.val}", f"eval.every={s.every}", f"eval.metric={s.metric}",
                f"eval.samples={'null' if s.samples is None else s.samples}",
                *(f"eval.{key}={value}" for key, value in self.cfg.eval.generation().items())]

    def _train_stage(self, root: Path, stage: int, config: Path, shards: Path, overrides: list[str],
                     best: bool = False) -> Path:
        model = root / "model"
        if model.exists():
            log.info("%s: exported earlier, skipped", model)
            return model
        ckpt = root / "checkpoints"
        launcher = [str(self.bin / "deepspeed"), "--num_gpus", str(self.cfg.launch.nproc),
                    "--master_port", str(free_port()), *self.cfg.launch.extra, "--module", "affectgpt.train"]
        args = [f"data.shards={shards}", f"checkpoint.dir={ckpt}", "checkpoint.resume=auto", f"tags.stage={stage}",
                f"run_name={overrides_tag(overrides, 'cell')} stage {stage}", *overrides]
        self._step(f"stage {stage} training", [*launcher, "--config", str(config), *args])
        self._in_process(f"stage {stage} export", ["export", str(ckpt), "--out", str(model),
                                                   *(["--best"] if best else [])])
        return model

    def _tracking_overrides(self, tags: dict[str, str]) -> list[str]:
        out = ["tracking.enabled=true", f"tracking.experiment={self.cfg.name}", f"tracking.uri={self.uri}"]
        return out + [f"tags.{k}={v}" for k, v in tags.items()]

    # ---- evaluation -----------------------------------------------------------------------------------------
    def _evaluate(self, tags: dict[str, str], recipe: Path, model: Path, out: Path) -> None:
        """Evaluate the cell's model; the first cell of a backbone also scores the baselines on the same split."""
        backbone = tags["backbone"]
        untrained = f"{backbone}/untrained"
        baselines = {"untrained": untrained, "most_frequent": "baseline/most-frequent"}
        wanted = {k: cell for k, cell in baselines.items() if k in self.cfg.baselines and not self._finished(cell)}
        common = {"study": self.cfg.name}
        baseline_tags = {key: {**common, "cell": cell, "backbone": backbone if key == "untrained" else "-",
                               "init": cell.split("/")[1], "selection": "-"} for key, cell in wanted.items()}
        provenance = json.loads((model / PROVENANCE).read_text(encoding="utf-8"))
        selected = {"selection": provenance.get("selection", "last"), "selected_step": str(provenance["step"])}
        run = EvalCommandConfig(
            model=model, shards=str(self.cfg.shards.test), out=out, eval=self.cfg.eval,
            untrained=recipe if "untrained" in wanted else None,
            train_labels=self.cfg.train_labels if "most_frequent" in wanted else None,
            tracking=TrackingConfig(uri=self.uri, experiment=self.cfg.name), run_name=tags["cell"],
            tags={**tags, **common, **selected}, baseline_tags=baseline_tags,
        )
        out.mkdir(parents=True, exist_ok=True)
        config = out / "eval.yaml"  # the cell's evaluation, rerunnable by hand: affectgpt eval --config <it>
        save_config(run, config)
        self._step(f"{tags['cell']} evaluation", [str(self.bin / "affectgpt"), "eval", "--config", str(config)])

    def _in_process(self, step: str, argv: list[str]) -> None:
        """``affectgpt <argv>`` in the study's own process: an export is one process on the CPU, and the torch,
        transformers and DeepSpeed imports it would repeat in a process of its own took ~5 of its ~8 s. An error
        fails the cell, as a crashed subprocess would, instead of ending the study."""
        from affectgpt.cli import main

        def run() -> int:
            try:
                return main(argv)
            except Exception:
                log.exception("%s failed", step)
                return 1

        self._timed(step, f"affectgpt {' '.join(argv)}", run)

    def _step(self, step: str, cmd: list[str]) -> None:
        self._timed(step, " ".join(cmd),
                    lambda: subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode)

    @staticmethod
    def _timed(step: str, command: str, run: Callable[[], int]) -> None:
        log.info("%s: %s", step, command)
        start = time.perf_counter()
        code = run()
        if code != 0:
            raise StepFailed(step, code)
        log.info("%s: done in %.0f s", step, time.perf_counter() - start)


class StepFailed(RuntimeError):
    def __init__(self, step: str, code: int):
        super().__init__(f"{step} exited with code {code}")
        self.step = step


def overrides_tag(overrides: list[str], key: str) -> str:
    prefix = f"tags.{key}="
    return next((o.removeprefix(prefix) for o in overrides if o.startswith(prefix)), "")

