"""Tracking: ByteTrack's rules on hand-made detections, MOTChallenge rows, `detect track`."""

from __future__ import annotations

import numpy as np
import pytest

from detect.errors import DetectError
from detect.track import ByteTracker, TrackerConfig
from detect.track.bytetrack import assign


def box(cx: float, cy: float, score: float = 0.9, cls: int = 0, side: float = 40.0) -> list:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2, score, cls]


def run(tracker: ByteTracker, frames: list[list[list]]) -> list[dict[int, np.ndarray]]:
    """Per frame: {id: row} of the tracker's output."""
    out = []
    for dets in frames:
        rows = tracker.update(np.array(dets, np.float64).reshape(-1, 6))
        out.append({int(r[4]): r for r in rows})
    return out


# ---------------------------------------------------------------- the assignment


def test_assign_is_lapjv_with_a_cost_limit():
    # hand-computed: the optimum of lap.lapjv(cost, extend_cost=True, cost_limit=0.4), where
    # leaving a row and a column unmatched costs 0.4 together. Matching (0,1) and (1,0) costs
    # 0.71; matching (0,0) only costs 0.3 + 0.4 = 0.70: the better of the two. (Filtering a plain
    # assignment of the whole matrix by the limit would have kept both pairs.)
    cost = np.array([[0.30, 0.35], [0.36, 1.0]])
    m, free_r, free_c = assign(cost, 0.4)
    assert m.tolist() == [[0, 0]] and free_r.tolist() == [1] and free_c.tolist() == [1]
    # with a looser limit both pairs: 0.71 < 0.3 + 1.0 (the limit cannot beat them now)
    m, free_r, free_c = assign(cost, 0.9)
    assert sorted(m.tolist()) == [[0, 1], [1, 0]] and not len(free_r) and not len(free_c)
    m, free_r, free_c = assign(np.array([[0.5]]), 0.4)  # above the limit: never matched
    assert m.shape == (0, 2) and free_r.tolist() == [0] and free_c.tolist() == [0]
    m, free_r, free_c = assign(np.zeros((0, 3)), 0.8)
    assert m.shape == (0, 2) and free_c.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- the tracker's rules


def test_crossing_objects_keep_their_ids():
    # A moves right along y = 100, B left along y = 125, 4 px a frame; they overlap (IoU up
    # to 0.23) around frame 12: the Kalman velocities keep each box on its own track.
    frames = [[box(20 + 4 * f, 100), box(116 - 4 * f, 125)] for f in range(25)]
    out = run(ByteTracker(), frames)
    assert all(sorted(o) == [1, 2] for o in out)
    for o in out:  # id 1 is A (moving right, the upper one) from the first frame to the last
        assert o[1][1] < o[2][1]
    assert out[-1][1][0] > out[-1][2][0]  # and they did cross


def test_an_occluded_object_keeps_its_id_within_the_buffer():
    # hidden for 10 frames (no detection), back where its motion leads: the same id
    path = [box(20 + 3 * f, 80) for f in range(40)]
    frames = [[p] if not 10 <= f < 20 else [] for f, p in enumerate(path)]
    out = run(ByteTracker(TrackerConfig(track_buffer=30), fps=30), frames)
    assert all(not o for o in out[10:20])
    assert all(list(o) == [1] for o in out[:10] + out[20:])


def test_a_track_lost_longer_than_the_buffer_gets_a_new_id():
    # buffer 30 frames at 30 fps = 15 frames at 15 fps (ByteTrack's scaling)
    path = [box(20 + 1 * f, 80) for f in range(60)]
    frames = [[p] if not 10 <= f < 27 else [] for f, p in enumerate(path)]
    out = run(ByteTracker(TrackerConfig(track_buffer=30), fps=15), frames)
    assert list(out[9]) == [1]
    assert not out[27]  # a new track is confirmed by its second frame
    assert all(list(o) == [2] for o in out[28:])
    frames = [[p] if not 10 <= f < 24 else [] for f, p in enumerate(path)]  # 14 frames: kept
    out = run(ByteTracker(TrackerConfig(track_buffer=30), fps=15), frames)
    assert all(list(o) == [1] for o in out[24:])


def test_low_score_boxes_continue_tracks_but_never_start_one():
    # BYTE's point: a tracked object whose score drops (occlusion, blur) to 0.3 < high 0.5 is
    # still followed through the second association; a new object at 0.3 starts nothing.
    frames = []
    for f in range(20):
        score = 0.3 if 8 <= f < 14 else 0.9
        frames.append([box(20 + 3 * f, 80, score), box(200, 200, 0.3)])
    out = run(ByteTracker(), frames)
    assert all(list(o) == [1] for o in out)
    assert out[10][1][5] == pytest.approx(0.3)  # the low box's score, on the same track
    # below low_thresh (0.1) the box is not used at all: the track is lost for those frames
    frames = [[box(20 + 3 * f, 80, 0.05 if 8 <= f < 14 else 0.9)] for f in range(20)]
    out = run(ByteTracker(), frames)
    assert all(not out[f] for f in range(8, 14)) and list(out[14]) == [1]


def test_new_tracks_need_the_new_track_score_and_a_second_frame():
    t = ByteTracker(TrackerConfig(new_track_thresh=0.6))
    run(t, [[box(50, 50)]])  # frame 1: confirmed at once (ByteTrack's first-frame rule)
    out = run(t, [[box(50, 50), box(150, 150, 0.55)], [box(50, 50), box(150, 150, 0.55)]])
    assert [list(o) for o in out] == [[1], [1]]  # 0.55 < 0.6: never a track
    out = run(t, [[box(50, 50), box(150, 150, 0.95)], [box(50, 50), box(150, 150, 0.95)]])
    assert [list(o) for o in out] == [[1], [1, 2]]  # one frame unconfirmed, then id 2
    # a one-frame blip (object 2 gone): never confirmed, so never an id
    out = run(t, [[box(50, 50), box(250, 250, 0.95)], [box(50, 50)]])
    assert [list(o) for o in out] == [[1], [1]] and t.next_id == 3
    np.testing.assert_array_equal(t.counts(2), [2, 0])


def test_class_is_the_score_weighted_vote_and_rows_point_at_their_detection():
    t = ByteTracker()
    classes = [0, 0, 1, 0, 1, 0]
    for f, c in enumerate(classes):
        dets = np.array([box(300, 300, 0.7), box(40 + 2 * f, 40, 0.8, cls=c)], np.float64)
        rows = t.update(dets)
        assert rows[:, 4].tolist() == [1, 2] and rows[:, 7].tolist() == [0, 1]
        np.testing.assert_allclose(rows[:, 5], dets[:, 4], rtol=1e-6)
    assert rows[1, 6] == 0  # 4 x 0.8 for class 0 against 2 x 0.8 for class 1
    np.testing.assert_array_equal(t.counts(), [2])


def test_kalman_learns_the_velocity():
    # after a steady 5 px / frame, the track's box is the detection's (within a pixel) and the
    # prediction for a missing frame lands 5 px further
    t = ByteTracker()
    for f in range(15):
        rows = t.update(np.array([box(20 + 5 * f, 60)]))
    assert rows[0, 0] == pytest.approx(box(90, 60)[0], abs=1.0)
    assert t.tracked[0].mean[4] == pytest.approx(5.0, abs=0.3)


def test_bad_input_and_settings_are_errors():
    with pytest.raises(DetectError, match=r"\[K, 6\]"):
        ByteTracker().update(np.zeros((3, 4)))
    with pytest.raises(DetectError, match="low_thresh"):
        ByteTracker(TrackerConfig(low_thresh=0.6, high_thresh=0.5))
    with pytest.raises(DetectError, match="track_buffer"):
        TrackerConfig(track_buffer=-1).check()
    assert ByteTracker().update(np.zeros((0, 6))).shape == (0, 8)


# ---------------------------------------------------------------- ground truth and the command


def test_synth_video_writes_ground_truth_tracks(tmp_path):
    from detect.synth import SynthConfig, make_synth
    from detect.track.mot import read_mot

    cfg = SynthConfig(train=1, val=1, size=160, video=True, frames=30, occluders=1, seed=1)
    make_synth(tmp_path / "s", cfg)
    gt = read_mot(tmp_path / "s" / "video_gt.txt")
    assert gt[:, 0].min() == 1 and gt[:, 0].max() == 30
    for f in range(1, 31):
        ids = gt[gt[:, 0] == f, 1]
        assert len(ids) == len(set(ids.tolist()))  # one row per object and frame
    assert (gt[:, 6] == 1).all() and ((gt[:, 8] >= 0) & (gt[:, 8] <= 1)).all()
    assert (gt[:, 8] < 1).any()  # the screen hides some of them
    # the per-frame YOLO labels are the ground truth's visible boxes, normalised
    lab = np.loadtxt(tmp_path / "s" / "video_labels" / "frame_000007.txt", ndmin=2)
    g = gt[(gt[:, 0] == 7) & (gt[:, 8] > 0)]
    np.testing.assert_allclose(lab[:, 1:3] * 160, g[:, 2:4] + g[:, 4:6] / 2, atol=0.01)
    np.testing.assert_array_equal(lab[:, 0], g[:, 7])


def test_perfect_detections_give_one_track_per_object():
    """Oracle: the synthetic clip's own boxes as detections. Each object keeps one track id
    from its first frame to its last, and no track jumps between objects."""
    from detect.synth import SynthConfig, render_video_tracks

    t = ByteTracker(fps=15)
    pairs = set()
    for _, boxes, classes, ids, _vis in render_video_tracks(SynthConfig(frames=60, seed=1)):
        dets = np.concatenate([boxes, np.full((len(boxes), 1), 0.9), classes[:, None]], 1)
        rows = t.update(dets)
        assert len(rows) == len(boxes)
        pairs |= {(int(ids[int(r[7])]), int(r[4])) for r in rows}
    gt_ids, track_ids = zip(*pairs, strict=True)
    assert len(set(gt_ids)) == len(pairs) == len(set(track_ids))  # a one-to-one mapping


def test_detect_track_command(tmp_path):
    from typer.testing import CliRunner

    from detect.cli.main import make_app
    from detect.resources import shapes_weights
    from detect.synth import SynthConfig, make_synth
    from detect.track.mot import read_mot

    make_synth(tmp_path / "s", SynthConfig(train=1, val=1, video=True, frames=10, seed=2))
    out = tmp_path / "runs" / "track"
    args = ["track", str(tmp_path / "s" / "video.mp4"), "--weights", str(shapes_weights()),
            "--save-txt", "--out", str(out)]  # fmt: skip
    r = CliRunner().invoke(make_app(["track"]), args, prog_name="detect")
    assert r.exit_code == 0, r.output
    assert "Distinct objects per class" in r.output and (out / "video.mp4").is_file()
    rows = read_mot(out / "mot" / "video.txt")
    assert rows[:, 0].min() == 1 and rows[:, 0].max() <= 10 and (rows[:, 7:] == -1).all()
    text = (out / "mot" / "video.txt").read_text().splitlines()[0].split(",")
    assert len(text) == 10 and text[7:] == ["-1", "-1", "-1"]
    r = CliRunner().invoke(make_app(["track"]), ["track", str(tmp_path / "nope.mp4")])
    assert r.exit_code != 0 and "no such file" in str(r.exception)


def test_ctrl_c_keeps_what_was_written_whole(tmp_path):
    """Ctrl-C after 5 frames: the run says so, the MOT file holds exactly frames 1-5, the
    video is a whole file."""
    import cv2

    from detect.resources import default_predict_weights
    from detect.synth import SynthConfig, make_synth
    from detect.track.mot import read_mot
    from detect.track.run import run_track

    make_synth(tmp_path / "s", SynthConfig(train=1, val=1, video=True, frames=12, seed=2))

    def stop(done, total, name):
        if done == 5:
            raise KeyboardInterrupt

    s = run_track([str(tmp_path / "s" / "video.mp4")], str(default_predict_weights("cpu")),
                  out=tmp_path / "t", save_txt=True, callback=stop,
                  tracker=TrackerConfig(high_thresh=0.1, new_track_thresh=0.1))  # fmt: skip
    assert s.interrupted and s.frames == 5
    rows = read_mot(s.sequences[0].mot)
    assert set(rows[:, 0].astype(int)) <= {1, 2, 3, 4, 5}
    cap = cv2.VideoCapture(str(tmp_path / "t" / "video.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    cap.release()
