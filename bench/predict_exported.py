"""What a torch-free `detect predict` would gain: a minimal predict on an exported model, as whole
processes, next to `detect predict` today and `yolo predict` (PyTorch and OpenVINO).

The prototype (`run` below) is what the predict integration will do on the exported path: read
images (one thread ahead), letterbox (rectangular, `detect.runtime.letterbox_batch`), run the
exported tiny model in batches of 8 (`detect.runtime.load_exported`), NMS in numpy
(`detect.runtime.postprocess`, conf 0.25, IoU 0.45), map back, draw (`detect.draw`), write JPEGs.
It never imports torch (it checks). The bench runs, interleaved, each --rounds times on the same
200 `detect synth` images at 320 with annotated images saved, whole processes, and prints the
median wall time and peak RSS of each:

- `detect predict DIR --weights shapes-tiny.safetensors --imgsz 320 --device cpu` (today);
- the prototype on tiny exported to OpenVINO (f32) and to ONNX (ONNX Runtime);
- `yolo predict model=yolov8n_openvino_model` (`yolo export model=yolov8n.yaml format=openvino
  imgsz=320`, one command: ultralytics' fastest CPU path) and `yolo predict model=yolov8n.yaml`
  (PyTorch), both `imgsz=320 device=cpu save=True`, YOLO_OFFLINE=1;

then the start-up cost: the same commands on one image.

    .venv/bin/python bench/predict_exported.py [--rounds 3] [--images 200]
    .venv/bin/python bench/predict_exported.py run SRC --model M --out DIR   # the prototype
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_VERBOSE": "False"}


def run(src: Path, model_path: Path, out: Path, batch: int = 8, auto: bool = True) -> int:
    """The prototype predict: annotated copies of the images in `src` written to `out`."""
    import queue
    import threading

    import cv2

    from detect.inference.draw import draw_detections
    from detect.runtime import letterbox_batch, load_exported, postprocess, unletterbox_boxes

    model = load_exported(model_path)
    files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out.mkdir(parents=True, exist_ok=True)
    q: queue.Queue = queue.Queue(maxsize=2 * batch)

    def read() -> None:  # one thread ahead: cv2 decodes without the GIL
        for f in files:
            q.put((f, cv2.imread(str(f))))
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    done, end = 0, False
    while not end:
        items = []
        while len(items) < batch:
            item = q.get()
            if item is None:
                end = True
                break
            items.append(item)
        if not items:
            break
        x, metas = letterbox_batch([im for _, im in items], model.imgsz, auto=auto)
        for (f, img), d, m in zip(items, postprocess(model(x)), metas, strict=True):
            d[:, :4] = unletterbox_boxes(d[:, :4], m.scale, m.pad, m.orig_hw)
            cv2.imwrite(str(out / f"{f.stem}.jpg"), draw_detections(img, d, model.names))
            done += 1
    if "torch" in sys.modules:
        sys.exit("the prototype imported torch")
    return done


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process (its own rusage, via wait4)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return dt, usage.ru_maxrss / 1024


def bench(args: argparse.Namespace) -> None:
    if shutil.which("yolo", path=str(BIN)) is None:
        sys.exit("ultralytics is missing: .venv/bin/pip install -e '.[bench]'")
    from detect.resources import shapes_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench-predict-exported-"))
    try:
        weights = shapes_weights()
        subprocess.run([str(BIN / "detect"), "synth", str(tmp / "data"), "--train",
                        str(args.images), "--val", "1", "--seed", "7"], check=True,
                       capture_output=True)  # fmt: skip
        images = tmp / "data" / "images" / "train"
        one = tmp / "one"
        one.mkdir()
        shutil.copy(sorted(images.iterdir())[0], one)
        for fmt, name in (("onnx", "tiny.onnx"), ("openvino", "tiny_openvino")):
            subprocess.run([str(BIN / "detect"), "export", str(weights), "--format", fmt,
                            "--out", str(tmp / name)], check=True, capture_output=True)  # fmt: skip
        v8_export = [str(BIN / "yolo"), "export", "model=yolov8n.yaml", "format=openvino"]
        v8_export.append("imgsz=320")
        subprocess.run(v8_export, cwd=tmp, env=ENV, check=True, capture_output=True)
        v8_ov = tmp / "yolov8n_openvino_model"
        me = [sys.executable, str(Path(__file__).resolve()), "run"]

        def commands(src: Path, r: str) -> dict[str, list[str]]:
            o = tmp / "out" / r
            return {
                "detect predict (PyTorch, today)": [
                    str(BIN / "detect"), "predict", str(src), "--imgsz", "320", "--weights",
                    str(weights), "--device", "cpu", "--out", str(o / "detect")],
                "prototype, tiny OpenVINO f32": [
                    *me, str(src), "--model", str(tmp / "tiny_openvino"), "--out", str(o / "ov")],
                "prototype, tiny ONNX Runtime": [
                    *me, str(src), "--model", str(tmp / "tiny.onnx"), "--out", str(o / "ort")],
                "yolo predict, YOLOv8n OpenVINO": [
                    str(BIN / "yolo"), "predict", f"model={v8_ov}", f"source={src}", "imgsz=320",
                    "device=cpu", "save=True", f"project={o}", "name=yolo-ov"],
                "yolo predict, YOLOv8n PyTorch": [
                    str(BIN / "yolo"), "predict", "model=yolov8n.yaml", f"source={src}",
                    "imgsz=320", "device=cpu", "save=True", f"project={o}", "name=yolo-pt"],
            }  # fmt: skip

        for title, src, rounds in ((f"{args.images} images", images, args.rounds),
                                   ("one image (start-up)", one, args.rounds + 2)):  # fmt: skip
            res: dict[str, list[tuple[float, float]]] = {}
            for r in range(rounds):
                for name, cmd in commands(src, f"{title[:3]}{r}").items():
                    res.setdefault(name, []).append(timed(cmd))
                line = "  ".join(f"{k.split(',')[0][:10]} {v[-1][0]:.2f}" for k, v in res.items())
                print(f"  {title}, round {r + 1}: {line}", flush=True)
            saved = len(list((tmp / "out" / f"{title[:3]}0" / "ov").glob("*.jpg")))
            print(f"\n{title}, whole processes, median of {rounds} interleaved runs "
                  f"(prototype saved {saved} annotated images):")  # fmt: skip
            print("| command | wall s | peak RSS MiB | vs yolo OpenVINO | vs yolo PyTorch |")
            print("|---|---:|---:|---:|---:|")
            med = {k: statistics.median(t for t, _ in v) for k, v in res.items()}
            for k, v in res.items():
                print(f"| {k} | {med[k]:.2f} | {max(m for _, m in v):.0f} | "
                      f"{med['yolo predict, YOLOv8n OpenVINO'] / med[k]:.2f}x | "
                      f"{med['yolo predict, YOLOv8n PyTorch'] / med[k]:.2f}x |")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        ap = argparse.ArgumentParser(description="the prototype predict on an exported model")
        ap.add_argument("cmd")
        ap.add_argument("src", type=Path)
        ap.add_argument("--model", type=Path, required=True)
        ap.add_argument("--out", type=Path, required=True)
        ap.add_argument("--square", action="store_true", help="square letterbox, not rect")
        a = ap.parse_args()
        sys.path.insert(0, str(REPO))
        run(a.src, a.model, a.out, auto=not a.square)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--images", type=int, default=200)
    bench(ap.parse_args())


if __name__ == "__main__":
    main()
