"""Where the shipped data files are: `weights/` and `anchors/`.

In the repo they sit at the root; `pip install .` installs them as the packages `detect.weights`
and `detect.anchors` (see pyproject.toml), so the default weights are found from the installed
package whatever the working directory. An editable install maps only `detect/`, so fall back to
the source tree beside it.
"""

from __future__ import annotations

from pathlib import Path


def data_dir(name: str) -> Path:
    """The folder of shipped data `name` ("weights" or "anchors").

    Looked up by path, not by import: an editable install does not map the data folders to
    the `detect.weights` / `detect.anchors` packages.
    """
    installed = Path(__file__).resolve().parent / name
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / name


def default_weights() -> Path:
    """The shipped default model: real objects (PASCAL VOC, 20 classes)."""
    voc = data_dir("weights") / "voc-tiny.safetensors"
    return voc if voc.is_file() else shapes_weights()


def shapes_weights() -> Path:
    """The shapes model: the six classes of `detect synth` (tests, demos, the sliding-window
    baselines of `detect bench`)."""
    return data_dir("weights") / "shapes-tiny.safetensors"
