"""Tracking: detect's ByteTrack against the ground-truth tracks of synthetic clips, and beside
ultralytics' own ByteTrack fed the very same detections.

1. Clips: `detect synth --video --occluders 1` (`detect.synth.render_video_tracks`, written to
   mp4 and read back as `detect track` reads it): 3-6 shapes bouncing at 1.5-5 px a frame, which
   cross and overlap one another, and a static screen (a band of another background) they pass
   behind. The ground truth is each object's id and whole box every frame, with the visible
   fraction of its pixels (`video_gt.txt`, MOTChallenge gt rows).
2. Detections: the shapes model (`weights/shapes-tiny.safetensors`, or --weights) at conf 0.1
   (what `detect track` runs at), computed once per clip, so every tracker gets the same boxes.
3. Trackers: `detect.track.ByteTracker` (defaults: the paper's high 0.5 / new track 0.6), and
   ultralytics' `BYTETracker` (8.4.190) with its `bytetrack.yaml` (high 0.25, new track 0.25)
   and with detect's thresholds, when ultralytics is importable; then both again on the ground
   truth's own boxes (a perfect detector), which separates the tracker's errors from the
   detector's.
4. Scores: py-motmetrics (IDF1, MOTA, ID switches, fragmentations, MT / ML), a tracker box
   matching a ground-truth box at IoU >= 0.5. A ground-truth box less than --min-visibility
   visible is not counted, and a tracker box on it (IoU >= 0.5) is dropped before scoring, as
   TrackEval treats MOTChallenge's ignored boxes.

    .venv/bin/python bench/track.py [--clips 6] [--frames 150] [--weights W] [--min-visibility 0.25]

Needs motmetrics (the `bench` extra). The distances are computed here: motmetrics 1.4's
`iou_matrix` calls `np.asfarray`, gone in numpy 2. For the ultralytics column:
`pip install --no-deps --target DIR ultralytics-opencv-headless lap` and PYTHONPATH=DIR.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METRICS = ["idf1", "mota", "num_switches", "num_fragmentations", "mostly_tracked",
           "mostly_lost", "num_unique_objects", "precision", "recall", "num_false_positives",
           "num_misses"]  # fmt: skip


def make_clips(root: Path, n: int, frames: int, occluders: int) -> list[Path]:
    """`n` synthetic clips (seeds 0..n-1) under `root`; returns their folders."""
    from detect.synth import SynthConfig, make_synth

    out = []
    for seed in range(n):
        d = root / f"clip{seed}"
        cfg = SynthConfig(train=1, val=1, video=True, frames=frames, occluders=occluders,
                          seed=seed)  # fmt: skip
        make_synth(d, cfg)
        out.append(d)
    return out


def detect_clip(predictor, video: Path) -> tuple[list[np.ndarray], float]:
    """The detector's rows [K, 6] for every frame of `video`, and its fps."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    dets = []
    for i in range(0, len(frames), 8):
        dets += predictor(frames[i : i + 8])
    return dets, fps


def run_detect(dets: list[np.ndarray], fps: float, cfg) -> list[np.ndarray]:
    from detect.track import ByteTracker

    t = ByteTracker(cfg, fps=fps)
    return [t.update(d)[:, :5] for d in dets]


class _Boxes:
    """What ultralytics' BYTETracker.update reads from its Results.boxes: conf, cls, xywh
    (centre, size), xyxy, with boolean indexing."""

    def __init__(self, d: np.ndarray) -> None:
        self.d = np.asarray(d, np.float32).reshape(-1, 6)
        self.xyxy = self.d[:, :4]
        self.conf, self.cls = self.d[:, 4], self.d[:, 5]
        xy = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        self.xywh = np.concatenate([xy, self.xyxy[:, 2:] - self.xyxy[:, :2]], 1)

    def __len__(self) -> int:
        return len(self.d)

    def __getitem__(self, idx) -> _Boxes:
        return _Boxes(self.d[idx])


def run_ultralytics(dets: list[np.ndarray], fps: float, thresholds: dict) -> list[np.ndarray]:
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils import IterableSimpleNamespace

    th = dict(thresholds)
    if th.pop("scale_buffer", False):  # ByteTrack's rule (detect's): the buffer at 30 fps
        th["track_buffer"] = int(fps / 30 * th["track_buffer"])
    args = IterableSimpleNamespace(tracker_type="bytetrack", fuse_score=True, **th)
    t = BYTETracker(args)  # (8.4's BYTETracker keeps track_buffer frames whatever the fps)
    out = []
    for d in dets:
        rows = t.update(_Boxes(d))
        out.append(np.asarray(rows, np.float64).reshape(-1, 8)[:, :5])
    return out


def score(name: str, gt: np.ndarray, tracks: list[np.ndarray], min_vis: float):
    """A motmetrics accumulator for one clip: gt rows (frame, id, x, y, w, h, 1, class, vis),
    tracks per frame [T, 5] (x1, y1, x2, y2, id)."""
    import motmetrics as mm

    from detect.iou import pairwise_iou
    from detect.track.bytetrack import assign

    acc = mm.MOTAccumulator(auto_id=False)
    for f, trk in enumerate(tracks, 1):
        g = gt[gt[:, 0] == f]
        gxyxy = np.concatenate([g[:, 2:4], g[:, 2:4] + g[:, 4:6]], 1)
        keep = g[:, 8] >= min_vis
        trk = np.asarray(trk, np.float64).reshape(-1, 5)
        if (~keep).any() and len(trk):  # tracker boxes on ignored ground truth: dropped
            iou = pairwise_iou(gxyxy[~keep], trk[:, :4])
            m, _, _ = assign(1 - iou, 0.5)
            trk = np.delete(trk, m[:, 1], 0)
        gk = gxyxy[keep]
        iou = (
            pairwise_iou(gk, trk[:, :4]) if len(gk) and len(trk) else np.zeros((len(gk), len(trk)))
        )
        dist = np.where(iou >= 0.5, 1 - iou, np.nan)
        acc.update(g[keep, 1].astype(int).tolist(), trk[:, 4].astype(int).tolist(), dist, frameid=f)
    return acc


def oracle_dets(gt: np.ndarray, frames: int, min_vis: float) -> list[np.ndarray]:
    """The ground truth's own boxes (those at least `min_vis` visible) as detections, score
    0.9: what the trackers make of a perfect detector."""
    out = []
    for f in range(1, frames + 1):
        g = gt[(gt[:, 0] == f) & (gt[:, 8] >= min_vis)]
        xyxy = np.concatenate([g[:, 2:4], g[:, 2:4] + g[:, 4:6]], 1)
        out.append(np.concatenate([xyxy, np.full((len(g), 1), 0.9), g[:, 7:8]], 1))
    return out


def clip_stats(gt: np.ndarray) -> tuple[int, int, int]:
    """(objects, crossings: pairs of objects whose boxes overlapped at some frame, occlusion
    events: an object's visibility falling below 0.5)."""
    from detect.iou import pairwise_iou

    pairs = set()
    for f in np.unique(gt[:, 0]):
        g = gt[gt[:, 0] == f]
        b = np.concatenate([g[:, 2:4], g[:, 2:4] + g[:, 4:6]], 1)
        iou = pairwise_iou(b, b)
        for i, j in zip(*np.nonzero(np.triu(iou > 0, 1)), strict=True):
            pairs.add((int(g[i, 1]), int(g[j, 1])))
    events = 0
    for tid in np.unique(gt[:, 1]):
        v = gt[gt[:, 1] == tid, 8] < 0.5
        events += int(np.sum(v[1:] & ~v[:-1]) + v[0])
    return len(np.unique(gt[:, 1])), len(pairs), events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--occluders", type=int, default=1)
    ap.add_argument("--weights", default=str(REPO / "weights" / "shapes-tiny.safetensors"))
    ap.add_argument("--conf", type=float, default=0.1)
    ap.add_argument("--min-visibility", type=float, default=0.25)
    ap.add_argument("--data", default=None, help="folder for the clips (default: a temp folder)")
    args = ap.parse_args()

    import motmetrics as mm

    from detect.inference.run import make_predictor
    from detect.settings import PredictConfig
    from detect.track import TrackerConfig
    from detect.track.mot import read_mot

    root = Path(args.data or tempfile.mkdtemp(prefix="detect-track-"))
    clips = sorted(root.glob("clip*")) or make_clips(root, args.clips, args.frames, args.occluders)
    predictor = make_predictor(args.weights, PredictConfig(conf=args.conf), "cpu")
    ours = TrackerConfig()
    trackers = {"detect ByteTracker": lambda d, fps: run_detect(d, fps, ours)}
    try:
        import ultralytics  # noqa: F401

        same = {"track_high_thresh": ours.high_thresh, "track_low_thresh": ours.low_thresh,
                "new_track_thresh": ours.new_track_thresh, "match_thresh": ours.match_thresh,
                "track_buffer": ours.track_buffer, "scale_buffer": True}  # fmt: skip
        yaml = {"track_high_thresh": 0.25, "track_low_thresh": 0.1, "new_track_thresh": 0.25,
                "match_thresh": 0.8, "track_buffer": 30}  # fmt: skip
        trackers["ultralytics BYTETracker, detect's thresholds"] = lambda d, fps: run_ultralytics(
            d, fps, same
        )
        trackers["ultralytics BYTETracker, bytetrack.yaml"] = lambda d, fps: run_ultralytics(
            d, fps, yaml
        )
    except ImportError:
        print("ultralytics not importable: its column is left out", file=sys.stderr)

    oracle = {f"{k} on ground-truth boxes": fn for k, fn in trackers.items() if "yaml" not in k}
    accs: dict[str, list] = {k: [] for k in [*trackers, *oracle]}
    seconds = dict.fromkeys(accs, 0.0)
    names, totals = [], np.zeros(3, int)
    for clip in clips:
        gt = read_mot(clip / "video_gt.txt")
        dets, fps = detect_clip(predictor, clip / "video.mp4")
        totals += clip_stats(gt)
        names.append(clip.name)
        perfect = oracle_dets(gt, len(dets), args.min_visibility)
        runs = [(k, fn, dets) for k, fn in trackers.items()]
        runs += [(k, fn, perfect) for k, fn in oracle.items()]
        for k, fn, d in runs:
            t0 = time.perf_counter()
            tracks = fn(d, fps)
            seconds[k] += time.perf_counter() - t0
            accs[k].append(score(clip.name, gt, tracks, args.min_visibility))

    mh = mm.metrics.create()
    frames = sum(len(a.events.index.get_level_values(0).unique()) for a in accs[next(iter(accs))])
    print(f"{len(clips)} clips in {root}, {frames} frames; {totals[0]} objects, {totals[1]} "
          f"crossing pairs, {totals[2]} occlusions (visibility < 0.5); ground truth counted "
          f"where >= {args.min_visibility:g} visible; detections: {Path(args.weights).name} "
          f"at conf {args.conf:g}")  # fmt: skip
    print()
    print("| tracker | IDF1 | MOTA | ID switches | frag. | MT / ML | IDs | P | R | ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in accs:
        s = mh.compute_many(accs[k], metrics=METRICS, names=names, generate_overall=True)
        o = s.loc["OVERALL"]
        ms = 1000 * seconds[k] / max(frames, 1)
        print(f"| {k} | {o.idf1:.3f} | {o.mota:.3f} | {int(o.num_switches)} | "
              f"{int(o.num_fragmentations)} | {int(o.mostly_tracked)} / {int(o.mostly_lost)} | "
              f"{int(o.num_unique_objects)} | {o.precision:.3f} | {o.recall:.3f} | "
              f"{ms:.2f} |")  # fmt: skip
    print()
    print("per clip IDF1 / MOTA / ID switches:")
    for k in accs:
        s = mh.compute_many(accs[k], metrics=METRICS, names=names)
        cells = ", ".join(f"{n} {r.idf1:.3f}/{r.mota:.3f}/{int(r.num_switches)}"
                          for n, r in s.iterrows())  # fmt: skip
        print(f"  {k}: {cells}")


if __name__ == "__main__":
    main()
