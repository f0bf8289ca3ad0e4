"""ByteTrack: identities for detections across frames, by associating every detection box.

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022.
Per frame (`ByteTracker.update`), after a Kalman prediction of every track (`kalman.py`):

1. high-score boxes (score >= `high_thresh`) are matched to the tracked and lost tracks by IoU
   fused with the score (cost 1 - IoU x score), optimal assignment, cost <= `match_thresh`;
2. low-score boxes (`low_thresh` < score < `high_thresh`: occluded, blurred objects, the
   paper's point) are matched to the tracks still unmatched that were tracked in the last
   frame, by IoU alone, cost 1 - IoU <= 0.5; tracks left over become lost;
3. a track born in the last frame (unconfirmed) takes the remaining high boxes (cost <= 0.7)
   or is dropped;
4. a remaining high box scoring >= `new_track_thresh` starts a new track (confirmed on its
   second match; on the first frame at once);
5. a track lost for longer than `track_buffer` frames (at 30 fps; scaled by the frame rate)
   is removed for good; tracked and lost tracks overlapping at IoU > 0.85 keep the older.

The rules and thresholds are the authors' (`yolox/tracker/byte_tracker.py`) with the defaults
of ultralytics' `bytetrack.yaml` where the two differ on a name: `high_thresh` 0.5 and
`new_track_thresh` 0.6 are the paper's (track_thresh, + 0.1). IoU is continuous (no +1 pixel,
as ultralytics; the authors' cython_bbox adds one). The assignment is the one both
implementations make, `lap.lapjv(cost, extend_cost=True, cost_limit=t)` (Jonker-Volgenant):
leaving a track and a box unmatched costs t, so no pair above t is ever matched and the total
cost is optimal. Tracking is class-agnostic, as in both; a
track's class is the score-weighted vote of the detections it matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import lap
import numpy as np

from detect.errors import DetectError
from detect.iou import pairwise_iou
from detect.settings import TrackerConfig
from detect.track import kalman


class State(IntEnum):
    tracked = 1
    lost = 2
    removed = 3


@dataclass(eq=False)
class Track:
    """One object's track: Kalman state (cx, cy, w/h, h and velocities, pixels per frame)."""

    mean: np.ndarray  # float64 [8]
    cov: np.ndarray  # float64 [8, 8]
    score: float  # of the last matched detection
    cls: int  # of the last matched detection
    det: int  # index of the matched detection in this frame's input (-1: none this frame)
    id: int = 0  # 1, 2, ... in order of confirmation; 0 until then
    state: State = State.tracked
    activated: bool = False
    frame: int = 0  # last frame it was matched in
    start: int = 0  # frame it began
    removed_at: int = 0  # frame it was removed in (it stays matchable through that frame's end)
    votes: dict[int, float] = field(default_factory=dict)  # class -> summed score

    @property
    def xyxy(self) -> np.ndarray:
        return kalman.xyah_to_xyxy(self.mean)

    @property
    def label(self) -> int:
        """The class its detections voted for (summed scores; the lowest id on ties)."""
        return max(sorted(self.votes), key=self.votes.__getitem__) if self.votes else self.cls

    def _take(self, box: np.ndarray, score: float, cls: int, det: int, frame: int) -> None:
        self.mean, self.cov = kalman.update(self.mean, self.cov, kalman.xyxy_to_xyah(box))
        self.score, self.cls, self.det, self.frame = score, cls, det, frame
        self.votes[cls] = self.votes.get(cls, 0.0) + score
        self.state, self.activated = State.tracked, True


def assign(cost: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal matching of rows to columns where a pair may cost at most `limit`:
    `lap.lapjv(cost, extend_cost=True, cost_limit=limit)`, which extends the matrix so that
    leaving a row (or a column) unmatched costs limit / 2.

    Args:
        cost: float [N, M].
    Returns:
        (matches int64 [P, 2] of (row, col), unmatched rows int64, unmatched cols int64).
    """
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.empty((0, 2), np.int64), np.arange(n), np.arange(m)
    _, x, _ = lap.lapjv(np.asarray(cost, np.float64), extend_cost=True, cost_limit=limit)
    rows = np.flatnonzero(x >= 0)
    matches = np.stack((rows, x[rows]), 1).astype(np.int64)
    return (
        matches,
        np.flatnonzero(x < 0),
        np.setdiff1d(np.arange(m), matches[:, 1]),
    )


def _iou_cost(tracks: list[Track], boxes: np.ndarray) -> np.ndarray:
    """1 - IoU between the tracks' predicted boxes and `boxes` [M, 4] -> float64 [N, M]."""
    if not tracks or not len(boxes):
        return np.ones((len(tracks), len(boxes)))
    t = np.stack([tr.xyxy for tr in tracks])
    return 1.0 - pairwise_iou(t, boxes.astype(np.float64))


class ByteTracker:
    """ByteTrack over one sequence of frames (module doc); a new sequence needs a new tracker.

    `tracker.update(dets)` once per frame, in order, with the detector's output for it (all
    boxes down to `low_thresh`: run the detector at `--conf` <= low_thresh, as ultralytics'
    `track` runs at 0.1).

    Args:
        cfg: thresholds and buffer (TrackerConfig()).
        fps: the frames' rate; the buffer is `track_buffer` frames at 30 fps, scaled by it
            (ByteTrack's rule: 15 frames at 15 fps).
    """

    def __init__(self, cfg: TrackerConfig | None = None, fps: float = 30.0) -> None:
        self.cfg = (cfg or TrackerConfig()).check()
        self.max_lost = int(float(fps) / 30.0 * self.cfg.track_buffer)
        self.frame = 0
        self.tracked: list[Track] = []
        self.lost: list[Track] = []
        self.next_id = 1
        self.classes: dict[int, int] = {}  # id -> class, of every confirmed track so far

    def update(self, dets: np.ndarray) -> np.ndarray:
        """Advance one frame with its detections.

        Args:
            dets: float [K, 6] rows (x1, y1, x2, y2, score, class), boxes in pixels (any order).
        Returns:
            float32 [T, 8] rows (x1, y1, x2, y2, id, score, class, det) of the confirmed tracks
            matched in this frame: the box is the track's Kalman state after the update (as
            ByteTrack reports it), `score` the matched detection's, `class` the track's voted
            class, `det` the row of `dets` it matched. Ordered by id.
        Raises:
            DetectError for `dets` of another shape.
        """
        dets = np.asarray(dets, np.float64)
        if dets.ndim != 2 or dets.shape[1] < 6:
            raise DetectError(f"tracker input: expected [K, 6] detections, got {dets.shape}")
        cfg = self.cfg
        self.frame += 1
        scores = dets[:, 4]
        hi_idx = np.flatnonzero(scores >= cfg.high_thresh)
        lo_idx = np.flatnonzero((scores > cfg.low_thresh) & (scores < cfg.high_thresh))
        for t in self.tracked + self.lost:
            t.det = -1
        unconfirmed = [t for t in self.tracked if not t.activated]
        confirmed = [t for t in self.tracked if t.activated]
        pool = confirmed + [t for t in self.lost if t not in confirmed]
        for t in pool:
            t.mean, t.cov = kalman.predict(t.mean, t.cov, freeze_height=t.state != State.tracked)

        def take(t: Track, i: int) -> None:
            t._take(dets[i, :4], float(dets[i, 4]), int(dets[i, 5]), int(i), self.frame)

        # 1. high-score boxes against every tracked and lost track
        cost = _iou_cost(pool, dets[hi_idx, :4])
        if cfg.fuse_score and cost.size:
            cost = 1.0 - (1.0 - cost) * scores[hi_idx][None, :]
        matches, free_t, free_d = assign(cost, cfg.match_thresh)
        for ti, di in matches:
            take(pool[ti], hi_idx[di])
        # 2. low-score boxes against the unmatched tracks that were tracked until now
        rest = [pool[i] for i in free_t if pool[i].state == State.tracked]
        matches, free_r, _ = assign(_iou_cost(rest, dets[lo_idx, :4]), 0.5)
        for ti, di in matches:
            take(rest[ti], lo_idx[di])
        newly_lost = [rest[i] for i in free_r]
        for t in newly_lost:
            t.state = State.lost
        # 3. tracks born last frame against the high boxes left
        left = hi_idx[free_d]
        cost = _iou_cost(unconfirmed, dets[left, :4])
        if cfg.fuse_score and cost.size:
            cost = 1.0 - (1.0 - cost) * scores[left][None, :]
        matches, free_u, free_d = assign(cost, 0.7)
        for ti, di in matches:
            take(unconfirmed[ti], left[di])
        for i in free_u:
            unconfirmed[i].state = State.removed
        # 4. new tracks from the high boxes nobody took
        born = []
        for i in left[free_d]:
            if scores[i] < cfg.new_track_thresh:
                continue
            box = kalman.xyxy_to_xyah(dets[i, :4])
            mean, cov = kalman.initiate(box)
            t = Track(mean, cov, float(scores[i]), int(dets[i, 5]), int(i),
                      frame=self.frame, start=self.frame)  # fmt: skip
            t.votes[t.cls] = t.score
            t.activated = self.frame == 1  # else confirmed by a second match
            born.append(t)
        # 5. forget long-lost tracks; tidy the lists
        for t in self.lost:  # (those lost before this frame, as ByteTrack)
            if t.state == State.lost and self.frame - t.frame > self.max_lost:
                t.state, t.removed_at = State.removed, self.frame
        # the authors' list order (it breaks ties in the next frame's assignment): the tracks
        # still tracked, the new ones, the lost ones found again; the lost still lost, then
        # the newly lost
        tracked = [t for t in self.tracked if t.state == State.tracked] + born
        tracked += [t for t in self.lost if t.state == State.tracked and t not in tracked]
        # a track removed in this frame stays in the lost list until the next frame's end (the
        # authors' and ultralytics' bookkeeping: removed tracks leave the list one frame late),
        # so it can still be found again then: the buffer is in effect one frame longer
        just = [t for t in self.lost if t.state == State.removed and t.removed_at == self.frame]
        lost = [t for t in self.lost if t.state == State.lost or t in just] + newly_lost
        self.tracked, self.lost = _drop_duplicates(tracked, lost)
        for t in self.tracked:
            if t.activated and t.id == 0:
                t.id, self.next_id = self.next_id, self.next_id + 1
        out = [t for t in self.tracked if t.activated and t.frame == self.frame]
        for t in out:
            self.classes[t.id] = t.label
        out.sort(key=lambda t: t.id)
        rows = [(*t.xyxy, t.id, t.score, t.label, t.det) for t in out]
        return np.array(rows, np.float32).reshape(-1, 8)

    def counts(self, num_classes: int = 0) -> np.ndarray:
        """Distinct objects seen so far per class: int64 [C] (C grows to the largest class),
        each confirmed track counted once under its voted class."""
        n = max([num_classes, *(c + 1 for c in self.classes.values())])
        out = np.zeros(n, np.int64)
        for c in self.classes.values():
            out[c] += 1
        return out


def _drop_duplicates(tracked: list[Track], lost: list[Track]) -> tuple[list[Track], list[Track]]:
    """A tracked and a lost track on the same object (IoU > 0.85): keep the one tracked for
    longer (ByteTrack's `remove_duplicate_stracks`)."""
    if not tracked or not lost:
        return tracked, lost
    cost = _iou_cost(tracked, np.stack([t.xyxy for t in lost]))
    drop_t, drop_l = set(), set()
    for p, q in zip(*np.nonzero(cost < 0.15), strict=True):
        age_p = tracked[p].frame - tracked[p].start
        age_q = lost[q].frame - lost[q].start
        if age_p > age_q:
            drop_l.add(int(q))
        else:
            drop_t.add(int(p))
    return (
        [t for i, t in enumerate(tracked) if i not in drop_t],
        [t for i, t in enumerate(lost) if i not in drop_l],
    )
