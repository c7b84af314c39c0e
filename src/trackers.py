"""Experiment trackers (logger=mlflow, logger=wandb): one tracker run per gradlab run, however many parts it is
run in. Lightning's loggers log the metrics and the task's hyperparameters; this module adds what they leave out:

- the tracker run is started before fitting and its id stored in <run dir>/trackers.json, so that a resume
  (ckpt_path=..., a SLURM requeue) logs into the same tracker run, even after a kill that left no time to clean up;
- at the end, the run's files go to the tracker run as artifacts: the composed config, run.json (command, commit,
  versions), metrics.json, the plots and the best checkpoint.
Where the tracker cannot be reached, the run stops before fitting with one line that says so."""
from __future__ import annotations

import json
import logging
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from src.errors import UserError
from src.records import write_json

log = logging.getLogger(__name__)

STORE = "trackers.json"
# Lightning logger class -> the tracker's name in trackers.json
KINDS = {"MLFlowLogger": "mlflow", "WandbLogger": "wandb"}


def kind(target_or_logger) -> str | None:
    """mlflow, wandb or None, from a logger's config (its _target_) or the logger itself."""
    name = str(target_or_logger).rsplit(".", 1)[-1] if isinstance(target_or_logger, str) else (
        type(target_or_logger).__name__)
    return KINDS.get(name)


def stored(run_dir: Path) -> dict:
    """The tracker run ids kept in the run directory (none yet: {})."""
    try:
        ids = json.loads((run_dir / STORE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("%s could not be read: the trackers start new runs", run_dir / STORE)
        return {}
    return ids if isinstance(ids, dict) else {}


def prepare(nodes: dict, run_dir: Path, resuming: bool) -> None:
    """Before the loggers are built: check that each MLflow tracking URI is one MLflow can use and that its
    server answers, and, resuming, give each tracker logger the id of the run's tracker run."""
    ids = stored(run_dir) if resuming else {}
    for name, node in nodes.items():
        tracker = kind(str(node.get("_target_")))
        if tracker == "mlflow":
            _check_mlflow(name, str(node.get("tracking_uri") or ""))
        given = (ids.get(tracker) or {}).get("id")
        if given:
            with open_dict(node):
                if tracker == "mlflow":
                    node.run_id = given
                else:
                    node.id, node.resume = given, "allow"
            log.info("%s: continuing the %s run %s (%s)", name, tracker, given, run_dir / STORE)


def _check_mlflow(name: str, uri: str) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(uri or None)
    except MlflowException:
        raise UserError(f"logger.{name}.tracking_uri={uri} is not a tracking URI MLflow can use: give "
                        f"http://<host>:<port> (a `mlflow server`) or sqlite:///<file>.db, as tracking_uri or in "
                        f"MLFLOW_TRACKING_URI.") from None
    if uri.startswith(("http://", "https://")):
        try:  # any answer will do (a server behind a login says 401): only silence is refused
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10).close()
        except urllib.error.HTTPError:
            pass
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"logger.{name}: the MLflow tracking server at {uri} does not answer ({reason}): start "
                            f"it (`mlflow server --backend-store-uri sqlite:///mlflow.db --port <port>`), or set "
                            f"MLFLOW_TRACKING_URI to one that runs.") from None


def start(run_dir: Path, loggers: list) -> None:
    """Rank zero, before fitting: start (or reopen) each tracker run now and store its id, so that a kill at any
    later moment leaves the id for the resume."""
    ids = stored(run_dir)
    for logger in loggers:
        tracker = kind(logger)
        if tracker is None:
            continue
        try:
            run_id = logger.run_id if tracker == "mlflow" else logger.experiment.id
        except Exception as e:  # noqa: BLE001 - the tracker's own errors (network, login, store): one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            again = (f" If the run it continues was deleted, remove {run_dir / STORE} to start a new one."
                     if ids.get(tracker) else "")
            hint = " Log in (`wandb login`) or set WANDB_MODE=offline." if tracker == "wandb" else ""
            raise UserError(f"logger={tracker}: the {tracker} run could not be started ({first}).{hint}{again}"
                            ) from None
        if (ids.get(tracker) or {}).get("id") != run_id:
            log.info("logger=%s: run %s (its id kept in %s for a resume)", tracker, run_id, run_dir / STORE)
        ids[tracker] = {"id": run_id}
    if ids:
        write_json(run_dir / STORE, ids)


def log_files(cfg: DictConfig, run_dir: Path, loggers: list, best: str | None) -> None:
    """Rank zero, at the end: the run's files as artifacts of each tracker run: config.yaml (the composed config
    of this part), run.json, metrics.json, the plots (plots/) and the best checkpoint (checkpoints/)."""
    trackers = [lg for lg in loggers if kind(lg)]
    if not trackers:
        return
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(_config_yaml(cfg))
        files = [(config, ""), *((run_dir / n, "") for n in ("run.json", "metrics.json") if (run_dir / n).is_file()),
                 *((p, "plots") for p in sorted(run_dir.glob("*.png")))]
        checkpoint = Path(best) if best and Path(best).is_file() else None
        for logger in trackers:
            if kind(logger) == "mlflow":
                for path, folder in [*files, *([(checkpoint, "checkpoints")] if checkpoint else [])]:
                    logger.experiment.log_artifact(logger.run_id, str(path), folder or None)
            else:
                _log_wandb(logger.experiment, files, checkpoint)


def _log_wandb(run, files: list, checkpoint: Path | None) -> None:
    """The files as a W&B artifact of type run-files, the checkpoint as one of type model (alias best); then the
    W&B run ends, so that the next run of this process (a sweep's) starts its own."""
    import wandb

    records = wandb.Artifact(f"run-files-{run.id}", type="run-files")
    for path, folder in files:
        records.add_file(str(path), name=f"{folder}/{path.name}" if folder else path.name)
    run.log_artifact(records)
    if checkpoint:
        model = wandb.Artifact(f"model-{run.id}", type="model")
        model.add_file(str(checkpoint), name=checkpoint.name)
        run.log_artifact(model, aliases=["best", "latest"])
    run.finish()


def _config_yaml(cfg: DictConfig) -> str:
    """The composed config, as used (interpolations resolved where they can be), without Hydra's own node."""
    plain = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        return OmegaConf.to_yaml(plain, resolve=True)
    except Exception:  # noqa: BLE001 - a value that resolves only inside Hydra's run: the config as written
        return OmegaConf.to_yaml(plain)
