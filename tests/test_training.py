"""The LightningModule and train.py: real tiny runs on the shipped CIFAR-10 sample, on CPU."""

from __future__ import annotations

import copy
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import lightning_utilities.core.rank_zero as utils_rank_zero
import pytest
import timm
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.utilities import rank_zero

from callbacks import RequeueOnSignal
from datamodules import CIFARDataModule
from nas.winner import Winner
from tests.conftest import RESNET_CELL, image_folder
from train import main
from training import ClassificationModule, load_teacher

REPO = Path(__file__).resolve().parents[1]
CIFAR_CFG = str(REPO / "configs" / "train" / "cifar10.yaml")
IMAGENET_CFG = str(REPO / "configs" / "train" / "imagenet_ffcv.yaml")
SBATCH = REPO / "configs" / "slurm" / "train.sbatch"
CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
TINY = {"channels": 4, "cells_per_stage": 1}


def _trainer(tmp_path: Path, **kwargs: Any) -> Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    defaults.update(kwargs)
    return Trainer(**defaults)


def _cli_args(root: Path, *extra: str) -> list[str]:
    return [
        "--config",
        CIFAR_CFG,
        "--trainer.default_root_dir",
        str(root),
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.callbacks=[]",
        *extra,
    ]


def test_weight_decay_skips_rank_one_tensors(tmp_path: Path) -> None:
    module = ClassificationModule("nb201", {"arch": RESNET_CELL, **TINY}, num_classes=10, weight_decay=4e-5)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, CIFARDataModule(batch_size=8, num_workers=0))
    groups = {g["weight_decay"]: g["params"] for g in trainer.optimizers[0].param_groups}
    assert set(groups) == {4e-5, 0.0}, f"one decayed and one exempt group, got {sorted(groups)}"
    model = module.network
    assert all(p.ndim > 1 for p in groups[4e-5]), "only conv and linear weights decay"
    norms = [
        p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()
    ]
    ids = {id(p) for p in groups[0.0]}
    assert norms and all(id(p) in ids for p in norms), "BatchNorm weights/biases must not decay"
    assert id(model.classifier.bias) in ids and id(model.classifier.weight) not in ids
    assert all(p.ndim <= 1 for p in groups[0.0])
    assert len(groups[4e-5]) + len(groups[0.0]) == len(list(model.parameters()))


class _SwapNetwork(Callback):
    """What the search callback does: install another architecture in ``setup``."""

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        pl_module.set_network("nb201", {"arch": CONV_CELL, **TINY})


def test_set_network_is_trained_and_reloaded_from_the_checkpoint(tmp_path: Path) -> None:
    module = ClassificationModule("nb201", {"arch": RESNET_CELL, **TINY}, num_classes=10)
    trainer = _trainer(tmp_path, callbacks=[_SwapNetwork()])
    trainer.fit(module, CIFARDataModule(batch_size=32, num_workers=0))
    assert module.network.ops == tuple(re.findall(r"(\w+)~\d", CONV_CELL))
    optimized = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimized == {id(p) for p in module.network.parameters()}, (
        "the optimizer must hold the new network"
    )
    ckpt = tmp_path / "swapped.ckpt"
    trainer.save_checkpoint(ckpt)

    reloaded = ClassificationModule.load_from_checkpoint(ckpt)
    assert reloaded.hparams.arch == "nb201" and reloaded.hparams.model_kwargs["arch"] == CONV_CELL
    assert reloaded.network.ops == module.network.ops
    for (name, a), b in zip(
        module.state_dict().items(), reloaded.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(RuntimeError, match="after configure_optimizers"):
        module.set_network("nb201", {"arch": RESNET_CELL})


def test_mixup_distillation_and_ema(tmp_path: Path) -> None:
    teacher = timm.create_model("test_resnet", num_classes=10)
    weights = tmp_path / "teacher.pth"
    torch.save(teacher.state_dict(), weights)
    loaded = load_teacher("test_resnet", str(weights), 10)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert all(
        torch.equal(a, b)
        for a, b in zip(teacher.state_dict().values(), loaded.state_dict().values(), strict=True)
    )

    module = ClassificationModule(
        "nb201",
        {"arch": RESNET_CELL, **TINY},
        num_classes=10,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
        teacher="test_resnet",
        teacher_checkpoint=str(weights),
        ema_decay=0.9,
    )
    start = {k: v.clone() for k, v in module.network.state_dict().items()}
    trainer = _trainer(tmp_path, limit_train_batches=3)
    trainer.fit(module, CIFARDataModule(batch_size=32, num_workers=0))
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/distill_loss", "val/acc1", "val_ema/acc1", "val_ema/loss"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    assert "train/acc1" not in metrics, "no accuracy on mixed targets"
    ema = module.ema.module.state_dict()
    assert any(not torch.equal(ema[k], start[k]) for k in start), "EMA weights never updated"
    keys = module.state_dict().keys()
    assert any(k.startswith("ema.module.") for k in keys), "EMA weights belong in checkpoints"
    assert not any("teacher" in k or "_compiled" in k for k in keys), (
        "the teacher stays out of checkpoints"
    )

    with pytest.raises(ValueError, match="mixup/cutmix need an even batch, got 3"):
        module.training_step((torch.zeros(3, 3, 32, 32), torch.zeros(3, dtype=torch.long)), 0)


def test_teacher_errors_never_give_an_untrained_teacher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ValueError, match="no pretrained weights for teacher 'nb201'.*teacher_checkpoint"
    ):
        load_teacher("nb201", None, 10)
    with pytest.raises(
        FileNotFoundError, match="teacher checkpoint '.*missing.pth' does not exist"
    ):
        load_teacher("resnet18", str(tmp_path / "missing.pth"), 10)
    with pytest.raises(ValueError, match="pretrained classifier has 1000 classes, the student 10"):
        load_teacher("resnet18", None, 10)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="Without network access.*teacher_checkpoint=PATH"):
        load_teacher("test_resnet", None, 1000)
    module = ClassificationModule(
        "nb201", {"arch": RESNET_CELL, **TINY}, num_classes=10, teacher="nb201"
    )
    with pytest.raises(ValueError, match="teacher 'nb201'"):
        _trainer(tmp_path).fit(module, CIFARDataModule(batch_size=32, num_workers=0))
    with pytest.raises(ValueError, match="teacher_checkpoint is set but teacher"):
        ClassificationModule("resnet18", teacher_checkpoint="x.pth")


def test_arch_accepts_a_winner_file_on_the_command_line(tmp_path: Path) -> None:
    winner = Winner(
        space="nb201",
        arch=CONV_CELL,
        model="nb201",
        model_kwargs={"arch": CONV_CELL},
        score=1.0,
        proxy="wrcor",
        flops=1,
        params=1,
        resolution=32,
        seed=0,
    )
    path = winner.to_yaml(tmp_path / "search" / "winner.yaml")
    cli = main(
        [
            "fit",
            *_cli_args(
                tmp_path,
                "--model.arch",
                str(path),
                "--model.model_kwargs",
                "{channels: 4, cells_per_stage: 1}",
                "--trainer.max_steps=2",
                "--trainer.limit_val_batches=1",
            ),
        ]
    )
    assert cli.model.hparams.arch == "nb201"
    assert cli.model.hparams.model_kwargs == {"arch": CONV_CELL, **TINY}
    assert cli.trainer.global_step == 2
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        main(_cli_args(tmp_path, "--model.arch", str(tmp_path / "nope.yaml")), run=False)


class StopAtStep(Callback):
    """Simulates a crash (preemption) at the start of an optimizer step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


class Probe(Callback):
    """Records the state training starts from and the learning rate of every step."""

    def __init__(self) -> None:
        self.start: dict[str, Any] = {}
        self.lrs: dict[int, float] = {}
        self.epochs: dict[int, int] = {}

    def on_train_start(self, trainer: Trainer, pl_module: Any) -> None:
        self.start = {
            "step": trainer.global_step,
            "epoch": trainer.current_epoch,
            "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),
            "scheduler": copy.deepcopy(trainer.lr_scheduler_configs[0].scheduler.state_dict()),
        }

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]
        self.epochs[trainer.global_step] = trainer.current_epoch


def _callbacks(*specs: str) -> str:
    return "--trainer.callbacks=[" + ", ".join(specs) + "]"


def _probe(cli: Any) -> Probe:
    return next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "Probe")


def test_resume_mid_epoch_continues_step_optimizer_and_schedule(tmp_path: Path) -> None:
    # 192 training images / 32 per step = 6 steps per epoch, 2 epochs; last.ckpt every 4 steps
    probe = "{class_path: tests.test_training.Probe}"
    common = ["--last_checkpoint.every_n_train_steps=4", "--trainer.limit_val_batches=1"]
    reference = main(["fit", *_cli_args(tmp_path / "reference", *common, _callbacks(probe))])
    ref = _probe(reference)
    assert reference.trainer.global_step == 12
    assert ref.lrs[0] == pytest.approx(0.1 * 32 / 256 * 0.01), (
        "warmup starts at 1% of the scaled lr"
    )
    assert max(ref.lrs.values()) == pytest.approx(0.1 * 32 / 256), "lr 0.1 per 256 images, batch 32"

    root = tmp_path / "interrupted"
    crash = "{class_path: tests.test_training.StopAtStep, init_args: {step: 5}}"
    with pytest.raises(RuntimeError, match="simulated crash at step 5"):
        main(["fit", *_cli_args(root, *common, _callbacks(crash))])
    last = root / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 4 and saved["epoch"] == 0, (
        "last.ckpt must be the mid-epoch save at step 4"
    )

    resumed = main(["fit", *_cli_args(root, *common, _callbacks(probe)), "--ckpt_path", "last"])
    start = _probe(resumed).start
    assert start["step"] == 4 and start["epoch"] == 0
    want, got = saved["optimizer_states"][0], start["optimizer"]
    assert got["param_groups"] == want["param_groups"]
    assert got["state"].keys() == want["state"].keys() and want["state"]
    for i, s in want["state"].items():
        assert torch.equal(got["state"][i]["momentum_buffer"], s["momentum_buffer"]), (
            f"momentum {i}"
        )
    assert start["scheduler"] == saved["lr_schedulers"][0]
    assert start["scheduler"]["last_epoch"] == 4
    lrs = _probe(resumed).lrs
    assert min(lrs) == 4 and resumed.trainer.global_step == reference.trainer.global_step == 12
    for step, lr in lrs.items():
        assert lr == pytest.approx(ref.lrs[step], rel=1e-12), (
            f"lr at step {step} differs from an uninterrupted run"
        )
    assert _probe(resumed).epochs[6] == 1, "the second epoch starts after 6 steps in total"

    tested = main(["test", *_cli_args(root), "--ckpt_path", "last"])
    assert 0.0 <= float(tested.trainer.callback_metrics["test/acc1"]) <= 1.0


SLURM_ENV = {
    "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NAME": "wrcor-train",
    "SLURM_NTASKS": "32",
    "SLURM_NTASKS_PER_NODE": "8",
    "SLURM_JOB_NUM_NODES": "4",
    "SLURM_NNODES": "4",
    "SLURM_NODELIST": "node[001-004]",
    "SLURM_PROCID": "13",  # second node, sixth GPU
    "SLURM_LOCALID": "5",
    "SLURM_NODEID": "1",
    "SLURM_CPUS_PER_TASK": "12",
}


def test_slurm_allocation_is_resolved_by_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.setenv(key, "unset")  # recorded so the test's end restores the real state
        monkeypatch.delenv(key)
    # building a rank-13 trainer makes this process "rank 13" for Lightning's rank-zero helpers
    monkeypatch.setattr(rank_zero.rank_zero_only, "rank", rank_zero.rank_zero_only.rank)
    monkeypatch.setattr(utils_rank_zero.rank_zero_only, "rank", utils_rank_zero.rank_zero_only.rank)
    # the flags of the srun line in configs/slurm/train.sbatch, on CPU
    cli = main(
        [
            "--config",
            IMAGENET_CFG,
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.num_nodes",
            SLURM_ENV["SLURM_JOB_NUM_NODES"],
            "--trainer.devices",
            SLURM_ENV["SLURM_NTASKS_PER_NODE"],
            "--data.init_args.num_workers",
            SLURM_ENV["SLURM_CPUS_PER_TASK"],
            "--model.arch",
            "resnet18",
        ],
        run=False,
    )
    trainer = cli.trainer
    uint8_ops, float_ops = cli.datamodule.augment_uint8, cli.datamodule.augment_normalized
    assert [type(m).__name__ for m in uint8_ops + float_ops] == ["BatchColorJitter", "BatchAutoAugment", "BatchRandomErasing"]
    assert uint8_ops[0].amounts == (0.4, 0.4, 0.4, 0.2) and float_ops[0].p == 0.5, "the recipe's augmentation"
    env = trainer.strategy.cluster_environment
    assert isinstance(env, SLURMEnvironment)
    assert env.creates_processes_externally, "srun starts the processes, Lightning must not"
    assert (trainer.world_size, trainer.num_nodes, trainer.num_devices) == (32, 4, 8)
    assert (trainer.global_rank, trainer.local_rank, trainer.node_rank) == (13, 5, 1)
    assert not trainer.is_global_zero
    assert env.main_address == "node001", "the first node of the allocation hosts the process group"
    assert env.main_port == 15000 + 3456, "port derived from the job id, the same on every node"
    # preemption is acted on between steps by callbacks.RequeueOnSignal, not by Lightning's handler
    assert not env.auto_requeue
    assert any(isinstance(cb, RequeueOnSignal) and cb.signum == signal.SIGUSR1 for cb in trainer.callbacks)
    assert trainer.precision == "bf16-mixed" and trainer.gradient_clip_val == 5.0

    env.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")  # checked when the process group starts
    with pytest.raises(ValueError, match="devices=8.*ntasks-per-node=4"):
        env.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)


def test_sbatch_directives_and_launch_line() -> None:
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    text = SBATCH.read_text()
    directives: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH"):
            key, _, value = line.removeprefix("#SBATCH").strip().partition("=")
            directives[key] = value
    assert directives["--nodes"] == "4"
    assert directives["--ntasks-per-node"] == "8"
    assert directives["--gres"] == "gpu:8", "one task per GPU"
    assert directives["--signal"] == "SIGUSR1@90", "Lightning's SLURM requeue listens for SIGUSR1"
    assert "--requeue" in directives
    launch = " ".join(text.split("srun ", 1)[1].split("\\\n"))
    assert launch.split()[:3] == ["python", "train.py", "fit"]
    for flag, var in (
        ("--trainer.num_nodes", "SLURM_JOB_NUM_NODES"),
        ("--trainer.devices", "SLURM_NTASKS_PER_NODE"),
    ):
        assert re.search(rf'{re.escape(flag)}\s+"\${var}"', launch), flag
    assert "--config" in launch and "--ckpt_path" in launch


class _Stream(torch.utils.data.IterableDataset):
    """An unsized stream of batches (no ``__len__``), as from a streaming loader."""

    def __iter__(self):
        gen = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(8, 3, 32, 32, generator=gen), torch.randint(0, 10, (8,), generator=gen)


def test_an_unsized_loader_trains_with_max_steps_and_warmup_epochs_is_refused(tmp_path: Path) -> None:
    loader = torch.utils.data.DataLoader(_Stream(), batch_size=None)
    module = ClassificationModule("nb201", {"arch": RESNET_CELL, **TINY}, num_classes=10, lr_reference_batch=None)
    trainer = Trainer(accelerator="cpu", max_steps=3, default_root_dir=tmp_path, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 3
    warm = ClassificationModule("nb201", {"arch": RESNET_CELL, **TINY}, num_classes=10, warmup_epochs=1,
                                lr_reference_batch=None)
    trainer = Trainer(accelerator="cpu", max_steps=3, default_root_dir=tmp_path, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"warmup_epochs=1 needs a train loader with a length"):
        trainer.fit(warm, train_dataloaders=loader)


NB201_CFG = str(REPO / "configs" / "train" / "nb201_cifar10.yaml")
MBV2_CFG = str(REPO / "configs" / "train" / "mbv2_imagenet.yaml")
MBV2_ARCH = (
    "r192_s24_e2k3c64s2b24n2_e2k5c40s2b88n3_e2k5c48s1b120n2_e1k3c32s2b48n4_e2k5c120s1b152n3"
    "_e2k3c192s2b96n2_e2k7c320s1b312n1_h264_se"
)
ONE_STEP = [
    "--trainer.accelerator=cpu",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.callbacks=[]",
]


def _nb201_winner(path: Path, resolution: int = 32) -> Path:
    return Winner(
        space="nb201", arch=CONV_CELL, model="nb201", model_kwargs={"arch": CONV_CELL}, score=1.0,
        proxy="wrcor", flops=1, params=1, resolution=resolution, seed=0,
    ).to_yaml(path)  # fmt: skip


def test_a_winner_trains_with_the_shipped_config_of_its_space(tmp_path: Path) -> None:
    path = _nb201_winner(tmp_path / "search" / "winner.yaml")
    args = ["fit", "--config", NB201_CFG, "--model.arch", str(path), *ONE_STEP]
    cli = main([*args, "--trainer.default_root_dir", str(tmp_path / "train"), "--data.init_args.batch_size=16"])
    assert cli.model.hparams.arch == "nb201"
    assert cli.model.hparams.model_kwargs == {"arch": CONV_CELL, "channels": 16, "cells_per_stage": 5}, (
        "the winner's cell at the config's width and depth"
    )
    assert cli.trainer.global_step == 1
    assert (tmp_path / "train" / "checkpoints" / "last.ckpt").is_file()


def test_a_config_that_contradicts_the_winner_names_both_values(tmp_path: Path) -> None:
    path = _nb201_winner(tmp_path / "winner.yaml")
    with pytest.raises(ValueError) as info:
        main(_cli_args(tmp_path, "--model.arch", str(path)), run=False)
    message = str(info.value)
    assert f"arch={RESNET_CELL!r}" in message and f"arch={CONV_CELL!r}" in message, message
    assert "remove arch from model_kwargs" in message, message


def test_train_warns_when_the_images_differ_from_the_winners_resolution(tmp_path: Path) -> None:
    path = _nb201_winner(tmp_path / "winner.yaml", resolution=64)
    args = ["fit", "--config", NB201_CFG, "--model.arch", str(path), *ONE_STEP, "--data.init_args.batch_size=16"]
    with pytest.warns(UserWarning, match=r"searched at 64x64 .* 32x32"):
        main([*args, "--trainer.default_root_dir", str(tmp_path / "train")])


def test_train_takes_the_winners_resolution(tmp_path: Path, capsys) -> None:
    winner = Winner(
        space="mbv2", arch=MBV2_ARCH, model="wrcor_mbv2", model_kwargs={"arch": MBV2_ARCH}, score=1.0,
        proxy="sjw", flops=1, params=1, resolution=192, seed=0,
    )  # fmt: skip
    path = winner.to_yaml(tmp_path / "winner.yaml")
    root = image_folder(tmp_path / "images")
    common = ["--config", MBV2_CFG, "--model.arch", str(path), "--data.init_args.root", str(root), "--model.num_classes=2"]
    cli = main(common, run=False)
    assert cli.datamodule.image_size == 192, "the config's 224 gives way to the winner's resolution"
    captured = capsys.readouterr()
    assert "resolution 192" in captured.out + captured.err, "says so"
    cli = main([*common, "--data.init_args.image_size=160"], run=False)
    assert cli.datamodule.image_size == 160, "the command line decides over the winner"


def test_a_module_without_arch_waits_for_a_network_and_refuses_to_train_without_one(tmp_path: Path) -> None:
    module = ClassificationModule(arch=None, num_classes=10)
    assert "network" not in module._modules, "no placeholder network is built"
    trainer = Trainer(default_root_dir=tmp_path, max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"the module has no network: give --model.arch"):
        trainer.fit(module, datamodule=CIFARDataModule(batch_size=16))
    module.set_network("nb201", {"arch": RESNET_CELL})
    module.configure_model()  # a network handed over (as the search does in setup): nothing to refuse
