"""The detector task (`--model`: a row of detect.archs.ARCHS): augmented letterboxed images in,
`DetectionLoss` (task-aligned or YOLOv2 assignment, CIoU, objectness and class BCE), validated
by predicting the val split (`detect.inference.predict_records`) and scoring it
(`detect.metrics.evaluate`).

Training uses mosaic / scale / flip / HSV augmentation (detect.data.augment), optional
multi-scale inputs, EMA weights (the ones validated and saved), gradient clipping at norm 10,
channels_last memory (~25% faster convolutions on CPU) and a DataLoader over an `EpochSampler`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from detect.anchor_boxes import boxes_wh, kmeans_anchors, read_anchors
from detect.archs import ARCHS, DEFAULT, get_arch
from detect.data import DatasetRecords
from detect.data.augment import AugmentConfig, AugmentedDataset, CacheReport
from detect.data.dataset import collate_fn
from detect.engine.optim import EpochSampler, unwrap
from detect.engine.trainer import steps, val_figures
from detect.errors import DetectError
from detect.inference.dataset import predict_records
from detect.losses import DetectionLoss, LossConfig
from detect.metrics import evaluate
from detect.models import ModelConfig, build_model, read_metadata, split_anchors
from detect.models.common import Detector
from detect.models.transfer import Transfer, transfer
from detect.resources import data_dir
from detect.settings import DetectorConfig

Loss = Callable[..., tuple[Tensor, dict[str, Tensor]]]  # DetectionLoss's signature


def start_model(cfg: DetectorConfig, weights: str | None) -> tuple[str, dict | None]:
    """(architecture, the config of the detector `weights` holds or None) of a new model:
    `cfg.model`, else that of `--weights W` (a detector file), else tiny."""
    source = None
    if weights:
        meta = read_metadata(weights)
        if meta.get("kind") != "backbone":
            source = meta.get("config") or None
            if (source or {}).get("arch") not in ARCHS:  # not a detector (window classifier)
                source = None
        elif cfg.model is None:
            backbone = str(meta.get("backbone", ""))
            return (backbone if backbone in ARCHS else DEFAULT), None
    arch = cfg.model or (source or {}).get("arch") or DEFAULT
    if source is not None and source.get("arch") != arch:
        source = None  # another architecture: only what matches by name and shape carries over
    return arch, source


def xy_scale_for(cfg: DetectorConfig, arch: str, source: dict | None) -> float:
    """Centre-offset stretch of a new model: `cfg.xy_scale`, else that of the detector it
    starts from (`source`, its config), else the architecture's (2 for tiny, YOLOv5's; 1 for
    yolov2, its exact decode)."""
    if cfg.xy_scale is not None:
        return float(cfg.xy_scale)
    if source is not None:
        return float(source.get("xy_scale", 1.0))
    return get_arch(arch).xy_scale


def anchors_for(
    cfg: DetectorConfig,
    records: DatasetRecords,
    levels: int,
    per_level: int,
    seed: int,
    arch: str | None = None,
) -> tuple[list | None, dict | None]:
    """(anchors per level, info for args.json) from `cfg.anchors`: a JSON file, "auto" (k-means
    on the training boxes, in the letterbox frame the model sees), or None (model default).
    Raises DetectError when the count does not fit the model or there are no boxes."""
    if cfg.anchors is None:
        return None, None
    if cfg.anchors == "auto":
        wh = boxes_wh(records, "letterbox")  # the letterbox scales the long side to the input
        if not len(wh):
            raise DetectError(
                f"{records.source}: no boxes in the training split for --anchors auto"
            )
        res = kmeans_anchors(wh, levels * per_level, seed=seed)
        info = {"source": "auto", "avg_iou": res.avg_iou, "bpr": res.bpr}
        return split_anchors(res.anchors.tolist(), levels), info
    a = read_anchors(cfg.anchors)
    if len(a) == per_level * levels:
        return split_anchors(a.tolist(), levels), {"source": str(cfg.anchors)}
    raise DetectError(
        f"{cfg.anchors}: {len(a)} anchors, but --model {arch or cfg.model} needs {levels} x "
        f"{per_level}"
    )


def freeze(model: Detector, spec: str | None, started_from_weights: bool) -> list[str]:
    """`--freeze`: the backbone's first N stages (`spec` "N") or all of it ("backbone") run
    without gradient, with their BatchNorm statistics fixed (Detector.freeze_backbone). None:
    the architecture's default (`Arch.freeze`) when the model starts from pretrained weights,
    else nothing. Returns the frozen stages' names."""
    stages = len(model.backbone.stages())
    if spec is None:
        n = get_arch(model.cfg.arch).freeze if started_from_weights else 0
    elif spec == "backbone":
        n = stages
    else:
        n = int(spec)  # Detector.freeze_backbone says when there are not that many
    return model.freeze_backbone(n)


def multi_scale(
    x: Tensor, targets: Tensor, imgsz: int, rng: random.Random | Any = random
) -> tuple[Tensor, Tensor]:
    """A random side in [0.5, 1.5] x imgsz (a multiple of 32) for this batch (YOLOv5's
    multi-scale): `x` Tensor[B, 3, S, S] resized (bilinear), target boxes (`targets[:, 2:]`,
    pixels) scaled with it. `rng` draws the side (default: Python's global random)."""
    new = int(rng.uniform(0.5 * imgsz, 1.5 * imgsz + 32)) // 32 * 32
    if new == x.shape[-1]:
        return x, targets
    f = new / x.shape[-1]
    x = nn.functional.interpolate(x, size=(new, new), mode="bilinear", align_corners=False)
    targets = targets.clone()
    targets[:, 2:] *= f
    return x, targets


class DetectorTask:
    """A detector to train on `train_rec`, validated on `val_rec`.

    Args:
        cfg: the task's settings.
        train_rec, val_rec: the splits.
        device: where the model trains.
        model_config, anchor_info, frozen: a resumed run's model config, anchors note and
            frozen backbone stages (None: a new model from `cfg`, anchors included, started
            from `weights` or its ImageNet backbone: detect.models.transfer).
        seed, rank, world: randomness and DDP sharding.
        loss: the loss (default `DetectionLoss(LossConfig(assigner=cfg.assigner))`); any
            callable with its signature, e.g. a test's that returns NaN.
    """

    clip_grad = 10.0

    def __init__(
        self,
        cfg: DetectorConfig,
        train_rec: DatasetRecords,
        val_rec: DatasetRecords,
        device: torch.device,
        model_config: dict | None = None,
        anchor_info: dict | None = None,
        frozen: list[str] | None = None,
        weights: str | None = None,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        loss: Loss | None = None,
    ) -> None:
        self.cfg, self.train_rec, self.val_rec, self.device = cfg, train_rec, val_rec, device
        self.batch, self.default_epochs = cfg.batch, cfg.default_epochs
        self.val_images = len(val_rec.images)
        self.anchor_info = anchor_info
        self.transfer: Transfer | None = None
        if model_config is not None:
            mcfg = ModelConfig.from_dict(model_config)
        else:
            mcfg, self.anchor_info = self._new_config(cfg, train_rec, weights, seed)
        self.model_config = mcfg
        model = build_model(mcfg)
        if model_config is None:
            start = weights or self._pretrained(cfg, mcfg.arch)
            if start:
                self.transfer = transfer(model, start)
        if frozen is not None:  # a resumed run freezes what it froze
            self.frozen = model.freeze_backbone(len(frozen))
        else:
            self.frozen = freeze(model, cfg.freeze, self.transfer is not None)
        # channels_last: measured ~25% faster training steps on CPU (oneDNN convolutions).
        self.model: nn.Module = model.to(device, memory_format=torch.channels_last)
        self.loss = loss or DetectionLoss(LossConfig(assigner=cfg.assigner))
        self.dataset = AugmentedDataset(
            train_rec, cfg.imgsz, AugmentConfig(mosaic=cfg.mosaic, scale=cfg.scale), seed=seed
        )
        self.sampler = EpochSampler(len(self.dataset), seed, rank, world)
        self.seed = seed
        self.mosaic_on = True

    @staticmethod
    def _new_config(
        cfg: DetectorConfig, train_rec: DatasetRecords, weights: str | None, seed: int
    ) -> tuple[ModelConfig, dict | None]:
        """A new model's config: the architecture, anchors (`--anchors`, else those of the
        detector it starts from, else the architecture's), input size and decode."""
        names = list(train_rec.names)
        arch, source = start_model(cfg, weights)
        row = get_arch(arch)
        levels, per = len(row.strides), len(row.anchors[0])
        anchors, info = anchors_for(cfg, train_rec, levels, per, seed, arch)
        if anchors is None and source is not None:
            anchors, info = source.get("anchors"), {"source": str(weights)}
        scaled = source if source is not None and row.scalable else {}
        xy_scale = xy_scale_for(cfg, arch, source)
        mcfg = ModelConfig(
            arch=arch, num_classes=len(names), names=names, anchors=anchors or [],
            imgsz=cfg.imgsz, width=float(scaled.get("width", cfg.width)),
            depth=float(scaled.get("depth", cfg.depth)), act=(source or {}).get("act", row.act),
            xy_scale=float(xy_scale),
        ).check()  # fmt: skip
        return mcfg, info

    @staticmethod
    def _pretrained(cfg: DetectorConfig, arch: str) -> str | None:
        """The ImageNet backbone file a new `arch` model starts from (None: none, or
        `--no-pretrained`). DetectError when it should and the file is missing."""
        name = get_arch(arch).pretrained
        if not name or not cfg.pretrained:
            return None
        path = data_dir("weights") / name
        if not path.is_file():
            raise DetectError(
                f"{path}: the ImageNet backbone of --model {arch} is missing (see "
                "weights/README.md); train from scratch with --no-pretrained"
            )
        return str(path)

    def cache_images(
        self, progress: Callable[[int, int], None], disk: str | Path | None = None
    ) -> CacheReport:
        """`--cache ram|disk`: decode and resize every training image once, before any loader
        (`disk`: the folder of the files; detect.data.augment.AugmentedDataset.cache_images)."""
        return self.dataset.cache_images(progress, disk)

    def steps_per_epoch(self, epoch: int) -> int:
        return steps(self.sampler.per_rank, self.batch)

    def loader(self, epoch: int) -> Iterable[Any]:
        self.dataset.set_epoch(epoch)
        self.dataset.mosaic_on = self.mosaic_on
        return DataLoader(
            self.dataset, batch_size=self.batch, sampler=self.sampler,
            num_workers=self.cfg.workers, collate_fn=collate_fn,
            pin_memory=self.device.type == "cuda", drop_last=False,
            generator=torch.Generator().manual_seed(self.seed + epoch),
        )  # fmt: skip

    def step(
        self, model: nn.Module, batch: Any, iteration: int, autocast: Callable
    ) -> tuple[Tensor, dict[str, Tensor], int]:
        imgs, targets, _ = batch
        x = imgs.to(self.device, non_blocking=True).float() / 255
        x = x.contiguous(memory_format=torch.channels_last)
        targets = targets.to(self.device)
        if self.cfg.multi_scale:
            x, targets = multi_scale(x, targets, self.cfg.imgsz)
        with autocast():
            raw = model(x)
        net = unwrap(model)
        loss, terms = self.loss(
            raw, targets, net.anchor_pixels, tuple(x.shape[-2:]), net.cfg.xy_scale
        )
        return loss, terms, len(x)

    def validate(
        self, model: nn.Module, progress: Callable[[int, int], None]
    ) -> tuple[float, float, float, float]:
        """(mAP50, mAP50-95, precision, recall) on the val split; P and R at the confidence
        of the best F1 over all classes (as ultralytics prints them)."""
        dets = predict_records(
            self.val_rec, model, imgsz=self.cfg.imgsz, conf=self.cfg.val_conf,
            iou=self.cfg.val_iou, batch=max(1, self.cfg.batch), callback=progress,
        )  # fmt: skip
        res = evaluate(self.val_rec, dets)
        self.last_eval = res  # the per-class figures, for the run's closing table
        return val_figures(res)

    def summary(self) -> dict[str, Any]:
        """The task's part of the weights' training summary (where the weights came from)."""
        out: dict[str, Any] = {"imgsz": self.cfg.imgsz, "batch": self.cfg.batch}
        if self.transfer is not None:
            out["init"] = self.transfer.to_dict()
        if self.frozen:
            out["frozen"] = self.frozen
        return out

    def args(self) -> dict[str, Any]:
        """The task's part of args.json."""
        return {
            "model": self.model_config.to_dict(),
            "anchors": self.anchor_info,
            "batches_per_epoch": self.steps_per_epoch(0),
            "frozen": self.frozen,
            "init": self.transfer.to_dict() if self.transfer is not None else None,
        }

    def resume_extra(self) -> dict[str, Any]:
        """What a resumed run needs to rebuild the model before loading its tensors."""
        return {"model_config": self.model_config.to_dict(), "anchor_info": self.anchor_info,
                "frozen": self.frozen}  # fmt: skip
