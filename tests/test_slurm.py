"""The SLURM recipes under a real SLURM, and DataLoader workers that survive SLURM's signals.

The tests marked ``slurm`` run ``configs/slurm/*.sbatch`` on the one-node cluster of
``configs/slurm/local_cluster.sh`` (brought up here when it is not running, as root installing
``slurm-wlm`` and ``munge`` first, and brought down at the end); they skip, saying why, where it
cannot come up. Several nodes are simulated only (``test_training.py``: SLURM's variables of a
4-node allocation, set by hand).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from datamodules import CIFARDataModule, ImageFolderDataModule
from nas.data import cifar10_sample

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "configs" / "slurm" / "local_cluster.sh"
CIFAR_CFG = "configs/train/cifar10.yaml"
SEARCH_CFG = "configs/search/nb201_cifar10.yaml"
# one node, two tasks of one CPU: gloo DDP on CPU, one DataLoader worker per task
ALLOCATION = ("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gres=none")
TRAIN_ARGS = (
    "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.callbacks=[]",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
)  # fmt: skip
SEARCH_ARGS = (
    "--trainer.accelerator", "cpu", "--search.num_candidates", "40", "--search.batch_size", "16",
    "--search.space_kwargs", "{channels: 4, cells_per_stage: 1}",
)  # fmt: skip
STEPS_PER_EPOCH = 3  # 192 training images of the sample / 2 ranks / batch 32, last batch dropped


# ------------------------------------------------------------------ DataLoader workers and signals
def _image_folder(root: Path) -> Path:
    """root/{train,val}/<class>/*.png from the shipped CIFAR-10 sample (2 classes, 8 images each)."""
    images, labels = cifar10_sample()
    for split in ("train", "val"):
        for c in (0, 1):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in np.flatnonzero(labels == c)[:8]:
                Image.fromarray(images[i]).save(folder / f"{i}.png")
    return root


def _datamodule(kind: str, tmp_path: Path) -> CIFARDataModule | ImageFolderDataModule:
    if kind == "cifar":
        dm: CIFARDataModule | ImageFolderDataModule = CIFARDataModule(num_workers=2, batch_size=16)
    else:
        dm = ImageFolderDataModule(str(_image_folder(tmp_path / "images")), image_size=32, batch_size=4, num_workers=2)
    dm.setup("fit")
    return dm


@pytest.fixture
def main_process_catches(tmp_path: Path) -> Iterator[Path]:
    """This process catches SIGUSR1 and SIGTERM, as Lightning's SLURM support does during fit.

    The handler records the pid it runs in: a DataLoader worker forked from this process would
    inherit it, and Lightning's would then save a checkpoint and requeue from inside a worker.
    """
    record = tmp_path / "handled_in"

    def handler(signum: int, _frame: object) -> None:
        with record.open("a") as f:
            f.write(f"{os.getpid()} {signum}\n")

    before = {s: signal.signal(s, handler) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        yield record
    finally:
        for s, previous in before.items():
            signal.signal(s, previous)


@pytest.mark.parametrize("sig", ["USR1", "TERM"])
@pytest.mark.parametrize("kind", ["cifar", "image_folder"])
def test_dataloader_workers_leave_slurm_signals_to_the_main_process(
    kind: str, sig: str, tmp_path: Path, main_process_catches: Path
) -> None:
    loader = _datamodule(kind, tmp_path).train_dataloader()
    it = iter(loader)
    for _ in it._workers:  # one batch from each worker: every worker has run its worker_init_fn
        next(it)
    pids = [w.pid for w in it._workers]
    # slurmstepd signals every process of the step, the workers too (Lightning issue #20280); here
    # from another process, as slurmstepd is
    subprocess.run(["kill", f"-{sig}", *map(str, pids)], check=True)
    time.sleep(0.5)
    batches = len(pids) + sum(1 for _ in it)
    assert batches == len(loader), f"{batches} of {len(loader)} batches after SIG{sig}"
    assert [w.pid for w in it._workers] == pids and all(w.is_alive() for w in it._workers)
    handled = main_process_catches.read_text() if main_process_catches.exists() else ""
    assert not handled, f"the main process's SIG{sig} handler ran in a DataLoader worker: {handled}"
    assert len(list(iter(loader))) == len(loader), "the next epoch runs on the same workers"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_program_that_does_not_catch_sigterm_exits_with_live_workers() -> None:
    # The workers die of SIGTERM as by default when their main process does not catch it: so
    # multiprocessing's terminate-and-join of daemonic children at exit ends them (a worker that
    # always ignored SIGTERM would keep the program waiting here forever).
    script = (
        "from datamodules import CIFARDataModule\n"
        "dm = CIFARDataModule(num_workers=2, batch_size=16)\n"
        "dm.setup('fit')\n"
        "it = iter(dm.train_dataloader())\n"
        "next(it)\n"
        "print(*[w.pid for w in it._workers], flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while [p for p in pids if _running(p)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if _running(p)], "workers outlived their program"


# ------------------------------------------------------------------ the cluster
@dataclass
class Cluster:
    """The local cluster: commands run with its SLURM_CONF, from the repository root."""

    env: dict[str, str]

    def run(self, *cmd: str) -> str:
        done = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout}{done.stderr}"
        return done.stdout

    def submit(self, recipe: str, out: Path, *options: str, export: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> int:
        exports = ",".join(["ALL", *(f"{k}={v}" for k, v in (export or {}).items())])
        job = self.run(
            "sbatch", "--parsable", *ALLOCATION, f"--output={out}", f"--export={exports}", *options,
            f"configs/slurm/{recipe}", *args,
        )  # fmt: skip
        return int(job.strip().split(";")[0])

    def job(self, job: int) -> dict[str, str]:
        text = self.run("scontrol", "show", "job", "-o", str(job))
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job: int, timeout: float, until: Callable[[], bool] | None = None) -> dict[str, str]:
        """Wait until the job has ended (or ``until()`` holds); returns its record."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.job(job)
            if (until is not None and until()) or (until is None and info["JobState"] in ENDED):
                return info
            if until is not None and info["JobState"] in ENDED:
                pytest.fail(f"job {job} ended ({info['JobState']}) before the awaited event")
            if time.monotonic() > deadline:
                self.run("scancel", str(job))
                pytest.fail(f"job {job} still {info['JobState']} after {timeout:.0f} s")
            time.sleep(0.5)


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


@pytest.fixture(scope="session")
def slurm() -> Iterator[Cluster]:
    """The local one-node cluster: the running one, or one brought up now (and down at the end)."""
    if not sys.platform.startswith("linux") or shutil.which("bash") is None:
        pytest.skip("the local SLURM cluster needs Linux and bash")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    # the jobs' `python` is this interpreter; one thread per task on a shared machine
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", OMP_NUM_THREADS="1", NAS_NO_PROGRESS="1")
    started = subprocess.run(["bash", str(CLUSTER), "status"], env=env, capture_output=True).returncode != 0
    if started:
        if os.geteuid() != 0 and shutil.which("slurmctld") is None:
            pytest.skip("SLURM is not installed and installing it needs root: apt-get install -y slurm-wlm munge")
        up = subprocess.run(["bash", str(CLUSTER), "up"], env=env, capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            pytest.skip(f"the local SLURM cluster did not come up: {(up.stdout + up.stderr).strip()[-500:]}")
    conf = subprocess.run(["bash", str(CLUSTER), "env"], env=env, capture_output=True, text=True, check=True)
    env["SLURM_CONF"] = conf.stdout.strip().split("=", 1)[1]
    try:
        yield Cluster(env)
    finally:
        if started:
            subprocess.run(["bash", str(CLUSTER), "down"], env=env, capture_output=True, timeout=180)


def _steps(csv_path: Path) -> list[int]:
    """The global steps with a logged training loss, in order."""
    with csv_path.open() as f:
        return [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_step") and (r["step"] or "").isdigit()]


def _show(out: str, *patterns: str) -> None:
    """Print the output lines that match (pytest -s shows them)."""
    for line in out.splitlines():
        if any(re.search(p, line) for p in patterns):
            print("   ", line)


# ------------------------------------------------------------------ bad input
@pytest.mark.slurm
def test_local_cluster_up_is_idempotent(slurm: Cluster) -> None:
    def pids() -> list[str]:
        return re.findall(r"running \(pid (\d+)\)", slurm.run("bash", str(CLUSTER), "status"))

    before = pids()
    assert len(before) == 3, "munged, slurmctld and slurmd"
    again = slurm.run("bash", str(CLUSTER), "up")
    assert "started" not in again and "is idle" in again, again
    assert pids() == before, "a second `up` starts nothing"
    node, cpus, state = slurm.run("sinfo", "-h", "-N", "-o", "%N %c %T").split()
    print(f"    node {node}: {cpus} CPUs, {state}")
    assert int(cpus) == len(os.sched_getaffinity(0)), "the node has the machine's cores"


@pytest.mark.slurm
def test_sbatch_recipes_refuse_bad_input_at_once(slurm: Cluster, tmp_path: Path) -> None:
    cases = [
        ("train.sbatch", {"CONFIG": "configs/train/missing.yaml"}, (), "config file 'configs/train/missing.yaml' does not exist"),
        ("train.sbatch", {"CONFIG": CIFAR_CFG}, ("--trainer.devices", "4"), "--trainer.devices 4 does not match the 2 tasks per node"),
        ("search.sbatch", {"CONFIG": "nowhere.yaml"}, (), "config file 'nowhere.yaml' does not exist"),
        ("search.sbatch", {}, ("--trainer.devices=1",), "--trainer.devices 1 does not match the 2 tasks per node"),
        ("train.sbatch", {"CONFIG": CIFAR_CFG}, ("--trainer.num_nodes", "2"), "--trainer.num_nodes 2 does not match the 1 nodes"),
    ]
    jobs = []
    for i, (recipe, export, args, _) in enumerate(cases):
        out = tmp_path / f"bad{i}.out"
        jobs.append((slurm.submit(recipe, out, "--time=5", export={"ROOT": str(tmp_path / "root"), **export}, args=args), out))
    for (job, out), (recipe, _, _, message) in zip(jobs, cases, strict=True):
        info = slurm.wait(job, timeout=120)
        text = out.read_text()
        print(f"job {job} {recipe}: {info['JobState']} {info['ExitCode']} after {info['RunTime']}: {text.strip()}")
        assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0", info
        assert f"{recipe}: error: {message}" in text, text
        assert info["RunTime"] < "00:00:10", "refused before any task started"
    assert not (tmp_path / "root").exists()


# ------------------------------------------------------------------ training
@pytest.mark.slurm
def test_train_sbatch_two_tasks_trains_and_writes_checkpoints(slurm: Cluster, tmp_path: Path) -> None:
    root, out = tmp_path / "train", tmp_path / "train.out"
    job = slurm.submit("train.sbatch", out, "--time=10", export={"CONFIG": CIFAR_CFG, "ROOT": str(root)},
                       args=(*TRAIN_ARGS, "--trainer.max_epochs", "2"))  # fmt: skip
    info = slurm.wait(job, timeout=600)
    text = out.read_text()
    _show(text, r"^job \d+ restart", "GLOBAL_RANK", "distributed_backend", "max_epochs")
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text, text
    assert "distributed_backend=gloo" in text
    last = torch.load(root / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 2 * STEPS_PER_EPOCH), "2 epochs of 3 steps on each rank"
    best = list((root / "checkpoints").glob("epoch*-acc1_*.ckpt"))
    assert len(best) == 1, "the best checkpoint by val/acc1"
    print(f"    checkpoints: {sorted(p.name for p in (root / 'checkpoints').iterdir())}, "
          f"last at epoch {last['epoch']}, step {last['global_step']}; ran {info['RunTime']}")  # fmt: skip


def _elapsed_s(info: dict[str, str]) -> int:
    parts = [int(p) for p in re.split(r"[-:]", info["RunTime"])]
    return sum(p * m for p, m in zip(reversed(parts), (1, 60, 3600, 86400), strict=False))


def _csv_logger(root: Path) -> str:
    """The CSV logger alone, written at every step (the steps of each start are read from it)."""
    return (
        "[{class_path: lightning.pytorch.loggers.CSVLogger, init_args: "
        f"{{save_dir: {root}, name: csv, flush_logs_every_n_steps: 1}}}}]"
    )


@pytest.mark.slow
@pytest.mark.slurm
def test_preemption_requeues_and_resumes_at_the_saved_step(slurm: Cluster, tmp_path: Path) -> None:
    root, out = tmp_path / "preempt", tmp_path / "preempt.out"
    hpc = root / "hpc_ckpt_1.ckpt"
    metrics = [root / "csv" / f"version_{v}" / "metrics.csv" for v in (0, 1)]

    def logged(run: int, at_least: int) -> Callable[[], bool]:
        return lambda: metrics[run].exists() and len(_steps(metrics[run])) >= at_least

    args = (*TRAIN_ARGS, "--trainer.max_epochs", "100000", "--trainer.logger", _csv_logger(root))
    job = slurm.submit("train.sbatch", out, "--time=10", "--signal=SIGUSR1@120",
                       export={"CONFIG": CIFAR_CFG, "ROOT": str(root)}, args=args)  # fmt: skip
    slurm.wait(job, timeout=600, until=logged(0, STEPS_PER_EPOCH))
    # Training runs. Shorten the time limit so that 60-120 s remain: slurmctld's next time-limit
    # pass (every 30 s) sends the --signal warning, as near the end of any allocation. A fixed
    # short --time would race the start-up of the tasks on a busy machine.
    elapsed = _elapsed_s(slurm.job(job))
    slurm.run("scontrol", "update", f"JobId={job}", f"TimeLimit={elapsed // 60 + 2}")
    requeued = slurm.wait(job, timeout=180, until=lambda: slurm.job(job)["Restarts"] == "1")
    # the restart gets the long limit back (so it is not warned at once) while it waits to start
    slurm.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")
    state = torch.load(hpc, map_location="cpu", weights_only=False)
    saved = state["global_step"]
    stepped = state["loops"]["fit_loop"]["epoch_loop.state_dict"].get("_batches_that_stepped")
    slurm.wait(job, timeout=600, until=logged(1, 2 * STEPS_PER_EPOCH))
    slurm.run("scancel", str(job))
    info = slurm.wait(job, timeout=120)
    text = out.read_text()
    print(f"    job {job}: requeued ({requeued['JobState']}), {info['Restarts']} restart(s), then scancel: {info['JobState']}")
    _show(text, r"^job \d+ restart", "GLOBAL_RANK", "auto-requeue signal", "Requeued SLURM job", "Restored all states",
          "Received SIGTERM", "Bypassing SIGTERM", "DataLoader worker", "Error")  # fmt: skip
    assert f"job {job} restart 0: 1 nodes x 2 tasks, resume from 'last'" in text
    assert f"Requeued SLURM job: {job}" in text, text
    assert f"job {job} restart 1: 1 nodes x 2 tasks, resume from 'hpc'" in text, text
    assert "Restored all states from the checkpoint" in text, text
    assert "DataLoader worker" not in text and "killed by signal" not in text, text
    first, second = (_steps(m) for m in metrics)
    print(f"    HPC checkpoint at global step {saved} (logger step {stepped}); first start logged steps {first[0]}..{first[-1]}, "
          f"the restart {second[0]}..{second[-1]}")  # fmt: skip
    assert first[:saved] == list(range(saved)), "every step before the checkpoint, once"
    assert second == list(range(saved, saved + len(second))), "the restart continues at the saved step, no gap or repeat"


# ------------------------------------------------------------------ search
def _candidates(folder: Path) -> dict[str, str]:
    with (folder / "candidates.csv").open() as f:
        return {r["arch"]: r["wrcor"] for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def one_process_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], tuple[str, float]]:
    """The reference: the same search in one process (this one); its candidates' scores and winner."""
    import search

    folder = tmp_path_factory.mktemp("one_process_search")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each task: the same kernels, the same scores to the last bit
    try:
        winner = search.main(["--config", SEARCH_CFG, *SEARCH_ARGS, "--search.output_dir", str(folder)])
    finally:
        torch.set_num_threads(threads)
    scores = _candidates(folder)
    assert len(scores) == 40
    return scores, (winner.arch, winner.score)


def _search_result(folder: Path) -> tuple[dict[str, str], tuple[str, float]]:
    winner = yaml.safe_load((folder / "winner.yaml").read_text())
    return _candidates(folder), (winner["arch"], winner["score"])


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.parametrize("scancel", [False, True], ids=["two_tasks", "resumed_after_scancel"])
def test_search_sbatch_matches_one_process(
    slurm: Cluster, tmp_path: Path, one_process_search: tuple[dict[str, str], tuple[str, float]], scancel: bool
) -> None:
    """Two tasks find the candidates, scores and winner of one process; so does a search that is
    cancelled part-way and submitted again (it resumes from its candidates.csv)."""
    folder, out = tmp_path / "two", tmp_path / "search.out"
    args = (*SEARCH_ARGS, "--search.output_dir", str(folder))
    csv_file = folder / "candidates.csv"
    job = slurm.submit("search.sbatch", out, "--time=10", args=args)
    partial: dict[str, str] = {}
    if scancel:
        slurm.wait(job, timeout=600, until=lambda: csv_file.exists() and len(csv_file.read_text().splitlines()) > 2)
        slurm.run("scancel", str(job))
        cancelled = slurm.wait(job, timeout=120)
        partial = _candidates(folder)
        assert cancelled["JobState"] == "CANCELLED" and 0 < len(partial) < 40, (cancelled["JobState"], len(partial))
        job = slurm.submit("search.sbatch", out, "--time=10", args=args)
    info = slurm.wait(job, timeout=600)
    text = out.read_text()
    _show(text, r"^job \d+ restart", "CANCELLED" if scancel else "GLOBAL_RANK", "zero-shot search", "winner:", "Error")
    assert info["JobState"] == "COMPLETED", text
    if scancel:
        assert re.search(rf"40 candidates \(\d+ scored now, {len(partial)} resumed\)", text), text
    else:
        assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    scores, winner = _search_result(folder)
    ref_scores, ref_winner = one_process_search
    assert scores == ref_scores, "the same candidates with the same scores as one process"
    assert winner == ref_winner
    how = f"cancelled after {len(partial)} of 40 candidates, resumed on 2 tasks" if scancel else "2 tasks"
    print(f"    one process: {ref_winner}; {how}: {winner}")
