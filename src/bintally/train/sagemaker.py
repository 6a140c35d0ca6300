"""SageMaker's training-container contract: `docker run IMAGE train` with the job laid out under /opt/ml.

    /opt/ml/input/data/<channel>/                  the data: an ABID-layout root, or a folder holding a manifest .parquet
    /opt/ml/input/config/hyperparameters.json      {"name": "value", ...} (SageMaker passes every value as text)
    /opt/ml/model/                                 the model artifact, written here
    /opt/ml/output/failure                         why the job failed (then the exit status is non-zero)

Hyperparameters take the original system's names (learning_rate, batch_size, epochs) and every `TrainConfig`
field, plus `recipe`; the ones SageMaker adds itself (`_tuning_objective_metric` from a tuning job,
`sagemaker_*` from its SDK) are logged and ignored, any other unknown name is refused. The root is configurable
(`--sagemaker-root`, BINTALLY_SAGEMAKER_ROOT) for tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from bintally.data.abid import AbidRoot
from bintally.data.manifest import build_manifest, write_manifest
from bintally.data.subset import Subset
from bintally.train.config import RECIPES, TrainConfig
from bintally.train.loop import StepUpdate, TrainResult, train

ML_ROOT = "/opt/ml"
ORIGINAL_NAMES = {"learning_rate": "lr"}  # the replaced system's hyperparameter names -> TrainConfig's
SAGEMAKERS_OWN = ("_", "sagemaker_")  # prefixes of the hyperparameters SageMaker adds to a job's own

log = logging.getLogger(__name__)


def channel_dir(root: Path) -> Path:
    """The `training` channel, or the job's only channel."""
    channels = sorted(p for p in (root / "input" / "data").glob("*") if p.is_dir())
    named = [c for c in channels if c.name == "training"]
    if named or len(channels) == 1:
        return (named or channels)[0]
    raise ValueError(f"{root}/input/data needs a 'training' channel or exactly one channel; found {[c.name for c in channels]}")


def channel_manifest(channel: Path, work: Path) -> str:
    """The channel's manifest: a .parquet in it, or one built (seed 0, 80/10/10) from the ABID root it holds."""
    manifests = sorted(channel.glob("*.parquet"))
    if manifests:
        return str(manifests[0])
    if not (channel / "bin-images").is_dir() or not (channel / "metadata").is_dir():
        raise ValueError(f"channel {channel} holds neither a manifest (.parquet) nor an ABID root (bin-images/, metadata/)")
    path = work / "manifest.parquet"
    write_manifest(build_manifest(AbidRoot(str(channel)), Subset(), seed=0), str(path))
    return str(path)


def job_config(root: Path) -> TrainConfig:
    """The training config from hyperparameters.json (absent: the defaults)."""
    path = root / "input" / "config" / "hyperparameters.json"
    given: dict = json.loads(path.read_text()) if path.exists() else {}
    added = sorted(name for name in given if name.startswith(SAGEMAKERS_OWN))
    if added:
        log.warning("ignoring the hyperparameters SageMaker adds: %s", ", ".join(added))
        given = {name: value for name, value in given.items() if name not in added}
    recipe = given.pop("recipe", "default")
    if recipe not in RECIPES:
        raise ValueError(f"hyperparameter recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    fields = {ORIGINAL_NAMES.get(name, name): value for name, value in given.items()}
    unknown = sorted(set(fields) - set(TrainConfig.model_fields))
    if unknown:
        raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
    return TrainConfig(**{**RECIPES[recipe], **fields})


def run_training_job(
    root: str = ML_ROOT,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[StepUpdate], None] | None = None,
) -> TrainResult:
    """Train as a SageMaker job: data and settings from `root`/input, the artifact into `root`/model. Any failure
    is written to `root`/output/failure (as SageMaker reports it), then raised."""
    base = Path(root)
    output = base / "output"
    try:
        cfg = job_config(base)
        (output / "data").mkdir(parents=True, exist_ok=True)
        manifest = channel_manifest(channel_dir(base), output / "data")
        return train(manifest, str(base / "model"), cfg, on_epoch=on_epoch, on_step=on_step)
    except Exception as exc:
        output.mkdir(parents=True, exist_ok=True)
        (output / "failure").write_text(f"{type(exc).__name__}: {exc}\n")
        raise
