"""Training: one engine (`Trainer` + hooks) for every task (the detectors, the window classifier).

    from detect.engine import TrainConfig, train
    result = train(TrainConfig.create(data="shapes/data.yaml", time=20))

Layout: `config` (RunConfig + DetectorConfig / WindowTrainConfig), `run` (train: build and
restore a run), `trainer` (the loop, the Task protocol, Hook), `hooks` (schedule, EMA, time
budget, Ctrl-C, close-mosaic, validation, best model, early stop, checkpoints, events),
`events` (typed progress events), `tasks/` (detector, window), `optim`, `state` (resume file),
`results` (results.csv / .png), `data` (the splits), `distributed` (DDP).
"""

from detect.engine.run import resume_config, train
from detect.engine.trainer import Hook, Stop, Trainer, TrainResult
from detect.settings import (
    DetectorConfig,
    Model,
    RunConfig,
    TrainConfig,
    WindowTrainConfig,
)

__all__ = [
    "DetectorConfig",
    "Hook",
    "Model",
    "RunConfig",
    "Stop",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "WindowTrainConfig",
    "resume_config",
    "train",
]
