"""The GPU figures the README owes, in one command: every figure in one JSON file, each part's log beside it.

    python benchmarks/gpu_check.py                           # one NVIDIA GPU, under 10 minutes: gpu_check.json
    python benchmarks/gpu_check.py --tiny --out /tmp/t.json  # every part in seconds on the CPU (the suite tests this)

Parts, in this order, each a subprocess with its own time limit (a part that fails or runs out of time records the last
lines of its log, and the check goes on; the exit status is 1 if any part failed):

- `overhead`: `benchmarks/train_step_overhead.py --device cuda` (digits; gradlab and plain PyTorch ms/step, ratio).
- `translation_step`: `benchmarks/translation_step.py --multi30k --device cuda` (the recipe's model on Multi30k
  batches: ms/step, target tokens/s, ratio); skipped, with a note, where the script is missing.
- `multi30k`: `train.py experiment=multi30k_gru trainer=gpu`: test BLEU (beam 5, the recipe's test) and training target
  tokens/s (`train/tgt_tokens_per_s` of each epoch, from the run's metrics CSV), beside the plain script's reference
  (40.1 BLEU, 32,000 tok/s). The recipe's precision (32) unless `--multi30k-precision bf16-mixed`.
- `cifar10`: `train.py experiment=cifar10_resnet18 data=image_folder data.path=<data>/cifar10/cifar10-jpg.tar.gz` (the
  device cannot download the official pickles; the tarball holds JPEG re-encodes of the same images): test accuracy
  and wall time.

Budget. A `run` call of the device tool lasts at most 10 minutes (and a session has 15 minutes of device time, the
machine's start included), so the whole check is sized for one call: `--budget` (550 s) is shared between the parts
run (overhead 60, translation_step 80, multi30k 260, cifar10 150, in proportion; what a part leaves unused goes to the
next, what it overruns is taken from the next), and each training part also gets Lightning's `trainer.max_time` (its
time less what start-up, data preparation and the test take), so that it stops in time and is still tested. The
recipes' own budgets (20 and 30 epochs) do not fit beside each other in that; the defaults are `--multi30k-epochs 10`
and `--cifar-epochs 15`, recorded in the JSON with the epochs actually run, each epoch's time and what stopped the
run (max_epochs, early_stopping or max_time). One part can run alone (`--parts multi30k --multi30k-epochs 20`), and
JSON files of separate calls are joined here with `--parts none --keep a.json --keep b.json --out gpu_check.json`.

On the device machine of this workplace (nvidia-h200, Python 3.12: torch, lightning, torchmetrics, sacrebleu,
tokenizers, rich, matplotlib and PyYAML are there; hydra-core, omegaconf and antlr4-python3-runtime, which every run of
the app needs, are not, nor are the other tasks' num2words, docopt, babel, soundfile, cffi, pycparser,
espeakng-loader, gymnasium and farama-notifications; nothing can be downloaded there). Once, here, in the repository's
root:

    bash benchmarks/gpu_check_wheels.sh   # .whl/: those packages as wheels, the versions of uv.lock (22 MiB);
                                          # .gpu_check/: multi30k (de, en) and cifar10 from ../shared/data, and the
                                          # commit (20 MiB); both ignored through .git/info/exclude

then one call of the device tool's `run`, with carry [".whl", ".gpu_check"] and timeout_s 600, the command:

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py
    --data-dir .gpu_check/data --out $OUT/gpu_check.json

($OUT/gpu_check.json and a log per part come back, within the tool's eight files.) Then give the machine back.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("overhead", "translation_step", "multi30k", "cifar10")
# seconds of the default budget each part gets (they add up to DEFAULT_BUDGET)
SHARES = {"overhead": 60, "translation_step": 80, "multi30k": 260, "cifar10": 150}
DEFAULT_BUDGET = sum(SHARES.values())
# what a training part spends outside Lightning's fit (start-up, data preparation, the test): its share less this is
# its trainer.max_time
OUTSIDE_FIT = {"multi30k": 75, "cifar10": 70}
RECIPE_EPOCHS = {"multi30k": 20, "cifar10": 30}
REFERENCE = {"multi30k": {"test_bleu": 40.1, "tgt_tokens_per_s": 32000.0,
                          "what": "a plain PyTorch script's test BLEU (beam 5) and training target tokens/s, as "
                                  "issue 17 gives them (its epochs and GPU are not recorded in the repository)"}}
MULTI30K_FILES = [f"{p}.{lang}.gz" for p in ("train", "val", "test_2016_flickr") for lang in ("de", "en")]
CIFAR_TARBALL = "cifar10/cifar10-jpg.tar.gz"
# the files of --data-dir each part reads (the overhead benchmark trains on the embedded digits)
NEEDS = {"overhead": [], "translation_step": [f"multi30k/{f}" for f in MULTI30K_FILES],
         "multi30k": [f"multi30k/{f}" for f in MULTI30K_FILES], "cifar10": [CIFAR_TARBALL]}
MEDIAN = re.compile(r"median: gradlab ([\d.]+) ms/step, plain PyTorch ([\d.]+) ms/step, ratio ([\d.]+)")
TOKENS = re.compile(r"target tokens/s: gradlab ([\d,.]+), plain ([\d,.]+)")
EPOCH_LINE = re.compile(r"epoch (\d+)/\S+ .*\(([\d.]+) s\)\s*$", re.M)
DEVICE = re.compile(r" device: (.+)$", re.M)  # the benchmarks' first line names the device torch ran on
# --tiny: the same commands on a few hundred sentences and images, small models, a few batches, the CPU
TINY = {
    "overhead": ["--device", "cpu", "--steps", "2", "--skip", "1", "--rounds", "1"],
    "translation_step": ["--device", "cpu", "--steps", "2", "--skip", "1", "--rounds", "1", "model.emb_dim=16",
                         "model.hidden=16", "data.vocab_size=300", "data.batch_size=16"],
    "multi30k": ["trainer.accelerator=cpu", "model.emb_dim=16", "model.hidden=16", "data.vocab_size=300",
                 "data.batch_size=16", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                 "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0", "task.max_decode_len=12"],
    "cifar10": ["trainer.accelerator=cpu", "trainer.precision=32", "model.width=8", "model.blocks=[1,1,1,1]",
                "data.batch_size=16", "data.num_workers=0", "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0"],
}
TINY_EPOCHS = 1
TINY_BUDGET = 600


# -- what was run where ------------------------------------------------------------------------------------------
def environment() -> dict:
    """GPU, versions and commit, without importing torch here (this process never holds a CUDA context): the versions
    from the installed packages' metadata, the GPU from nvidia-smi (each benchmark part also prints the device torch
    ran on)."""
    from importlib import metadata

    versions = {}
    for name in ("torch", "lightning", "torchmetrics", "hydra-core", "omegaconf", "sacrebleu", "tokenizers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        gpus = [line.strip() for line in smi.stdout.splitlines() if line.strip()] if smi.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        gpus = []
    return {"gpu": gpus[0] if gpus else None, "gpus": gpus, **versions, "python": platform.python_version(),
            "executable": sys.executable, "host": platform.node(), "cpus": os.cpu_count(), **source()}


def source() -> dict:
    """The commit and whether tracked files differ from it; where git cannot tell (the device machine gets the files
    without .git), what gpu_check_wheels.sh wrote into .gpu_check/source.json when it prepared the carried files."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and dirty.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip()), "commit_from": "git"}
    except (OSError, subprocess.TimeoutExpired):
        pass
    saved = ROOT / ".gpu_check" / "source.json"
    if saved.is_file():
        return {**json.loads(saved.read_text()), "commit_from": str(saved.relative_to(ROOT))}
    return {"commit": None, "dirty": None, "commit_from": "unknown (no git, no .gpu_check/source.json)"}


def tail(text: str, n: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


# -- the data: the shared copy, or a tiny one cut from it ----------------------------------------------------------
def tiny_data(data_dir: Path, out: Path, sentences: int = 400, images: int = 12) -> Path:
    """A few hundred Multi30k sentence pairs (their first lines) and a few CIFAR-10 JPEGs of each class (the first of
    each split, as a tarball of the same layout), so that --tiny runs the same data modules in seconds."""
    (out / "multi30k").mkdir(parents=True, exist_ok=True)
    (out / "cifar10").mkdir(exist_ok=True)
    for name in MULTI30K_FILES if (data_dir / "multi30k").is_dir() else []:
        with gzip.open(data_dir / "multi30k" / name, "rt", encoding="utf-8") as f:
            lines = [line for _, line in zip(range(sentences if name.startswith("train") else 24), f)]
        with gzip.open(out / "multi30k" / name, "wt", encoding="utf-8") as f:
            f.writelines(lines)
    if not (data_dir / CIFAR_TARBALL).is_file():
        return out
    taken: dict[str, int] = {}
    with tarfile.open(data_dir / CIFAR_TARBALL, "r|gz") as src, tarfile.open(out / CIFAR_TARBALL, "w:gz") as dst:
        for member in src:
            parts = member.name.split("/")
            if not (member.isfile() and len(parts) == 3 and parts[0] in ("train", "test")):
                continue
            key = "/".join(parts[:2])
            if taken.get(key, 0) < (images if parts[0] == "train" else images // 3):
                taken[key] = taken.get(key, 0) + 1
                dst.addfile(member, io.BytesIO(src.extractfile(member).read()))
            elif len(taken) == 20 and sum(taken.values()) == 10 * (images + images // 3):
                break  # ten classes in both splits, each with its share: the rest of the archive is not needed
    return out


# -- the parts -----------------------------------------------------------------------------------------------------
def hms(seconds: float) -> str:
    s = max(1, int(seconds))
    return f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def command(part: str, args, data_dir: Path, work: Path, timeout: float) -> tuple[list[str], dict]:
    """The command line of a part, and the budget it runs under (recorded in the JSON)."""
    py, tiny = sys.executable, args.tiny
    cache = f"paths.cache_dir={work / 'cache'}"
    if part == "overhead":
        return [py, "benchmarks/train_step_overhead.py", *(TINY[part] if tiny else ["--device", "cuda"])], {}
    if part == "translation_step":
        cmd = [py, "benchmarks/translation_step.py", "--multi30k", "--data-dir", str(data_dir)]
        return cmd + (TINY[part] if tiny else ["--device", "cuda"]) + [cache], {}
    epochs = TINY_EPOCHS if tiny else getattr(args, f"{part}_epochs")
    max_time = hms(max(30.0, timeout - OUTSIDE_FIT[part]))
    budget = {"epochs": epochs, "recipe_epochs": RECIPE_EPOCHS[part], "max_time": max_time}
    common = [f"trainer.max_epochs={epochs}", f"++trainer.max_time={max_time}", cache,
              f"hydra.run.dir={work / part}", "callbacks.progress_bar.interactive=false"]
    if part == "multi30k":
        budget["precision"] = args.multi30k_precision
        cmd = [py, "train.py", "experiment=multi30k_gru", "trainer=gpu", f"trainer.precision={args.multi30k_precision}",
               f"data.data_dir={data_dir}", *common]
    else:
        budget["precision"] = "bf16-mixed (the recipe's)" if not tiny else "32"
        cmd = [py, "train.py", "experiment=cifar10_resnet18", "data=image_folder",
               f"data.path={data_dir / CIFAR_TARBALL}", f"data.data_dir={work / 'data'}", *common]
    return cmd + (TINY[part] if tiny else []), budget


def run_part(cmd: list[str], log: Path, timeout: float, env: dict) -> tuple[int | None, float]:
    """Runs cmd in the repository's root, its output to log; on time out SIGTERM (the app saves its checkpoint),
    then SIGKILL, to its whole process group. Returns (exit status or None on time out, wall seconds)."""
    start = time.perf_counter()
    # its own process group (not a new session: whatever ends this check's session ends the part too)
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    with open(log, "w") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, **group)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
            stop(proc, grace=5)
        except BaseException:  # this check was stopped (SIGTERM, Ctrl-C): so is the part
            stop(proc, grace=2)
            raise
    return rc, time.perf_counter() - start


def stop(proc: subprocess.Popen, grace: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def parse_benchmark(text: str) -> dict:
    found = MEDIAN.findall(text)
    if not found:
        raise ValueError("no final 'median: gradlab X ms/step, plain PyTorch Y ms/step, ratio Z' line")
    app, plain, ratio = (float(v) for v in found[-1])
    result = {"gradlab_ms_per_step": app, "plain_ms_per_step": plain, "ratio": ratio}
    device = DEVICE.findall(text)
    if device:
        result["device"] = device[-1].strip()
    tokens = TOKENS.findall(text)
    if tokens:
        result["gradlab_tgt_tokens_per_s"], result["plain_tgt_tokens_per_s"] = (
            float(v.replace(",", "")) for v in tokens[-1])
    return result


def parse_run(run_dir: Path, text: str, budget: dict, wall: float) -> dict:
    """What a train.py run left: metrics.json (the test of the best checkpoint), run.json (epochs and steps run), the
    metrics CSV (per-epoch values), its config (what stopped it) and its log (each epoch's time)."""
    from omegaconf import OmegaConf

    metrics = json.loads((run_dir / "metrics.json").read_text())
    epochs = json.loads((run_dir / "run.json").read_text())["epochs"]
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    stopped_by = "max_epochs"
    if epochs < budget["epochs"]:  # early stopping (its patience used up after the best validation), or max_time
        stopped_by = "max_time"
        if OmegaConf.select(cfg, "callbacks.early_stopping"):
            vals = [v for e, v in epoch_column(run_dir, cfg.task.monitor) if e < epochs]  # not the re-validation
            sign = 1 if cfg.task.mode == "max" else -1
            best = max(range(len(vals)), key=lambda i: (sign * vals[i], -i)) if vals else 0
            if len(vals) - 1 - best >= cfg.callbacks.early_stopping.patience:
                stopped_by = "early_stopping"
    return {"metrics": metrics, "wall_s": round(wall, 1), "epochs_run": epochs, "stopped_by": stopped_by,
            "epoch_s": [float(s) for _, s in EPOCH_LINE.findall(text)], "config": cfg}


def epoch_column(run_dir: Path, column: str) -> list[tuple[int, float]]:
    """(epoch, value) of each row of the run's metrics CSV that holds column."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [(int(row["epoch"]), float(row[column])) for row in csv.DictReader(f) if row.get(column)]


def parse_multi30k(run_dir: Path, text: str, budget: dict, wall: float) -> dict:
    result = parse_run(run_dir, text, budget, wall)
    m, cfg = result["metrics"], result.pop("config")
    per_epoch = [v for _, v in epoch_column(run_dir, "train/tgt_tokens_per_s")]
    if not per_epoch:
        raise ValueError(f"{run_dir / 'csv' / 'metrics.csv'} has no train/tgt_tokens_per_s")
    tok = statistics.median(per_epoch[1:] or per_epoch)  # the first epoch pays for warm-up (cuDNN plans, allocator)
    ref = REFERENCE["multi30k"]
    result.update(test_bleu=m["test/bleu"], test_beam_size=cfg.task.beam_size, test_chrf=m.get("test/chrf"),
                  val_bleu_greedy=m.get("val/bleu"), tgt_tokens_per_s=tok, tgt_tokens_per_s_per_epoch=per_epoch,
                  bleu_minus_reference=m["test/bleu"] - ref["test_bleu"],
                  tokens_per_s_over_reference=tok / ref["tgt_tokens_per_s"])
    return result


def parse_cifar10(run_dir: Path, text: str, budget: dict, wall: float) -> dict:
    result = parse_run(run_dir, text, budget, wall)
    result.pop("config")
    result.update(test_acc=result["metrics"]["test/acc"])
    return result


# -- the check -----------------------------------------------------------------------------------------------------
def check_part(part: str, args, data_dir: Path, work: Path, timeout: float, log: Path) -> dict:
    if part == "translation_step" and not (ROOT / "benchmarks" / "translation_step.py").is_file():
        return {"status": "skipped", "note": "benchmarks/translation_step.py is not in this checkout"}
    cmd, budget = command(part, args, data_dir, work, timeout)
    entry = {"command": shlex.join(cmd), "timeout_s": round(timeout), "log": log.name, **(
        {"budget": budget} if budget else {}), **({"reference": REFERENCE[part]} if part in REFERENCE else {})}
    print(f"[gpu_check] {part}: up to {timeout:.0f} s: {entry['command']}", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.tiny:  # tiny steps: a thread per core costs more than it gains, the more so on a busy machine
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rc, wall = run_part(cmd, log, timeout, env)
    text = log.read_text(errors="replace")
    entry.update(returncode=rc, wall_s=round(wall, 1))
    if rc != 0:
        why = f"ran out of its {timeout:.0f} s" if rc is None else f"exited with status {rc}"
        return {**entry, "status": "failed", "error": f"{why}; the last lines of {log.name}:\n{tail(text)}"}
    try:
        if part in ("overhead", "translation_step"):
            results = parse_benchmark(text)
        else:
            results = (parse_multi30k if part == "multi30k" else parse_cifar10)(work / part, text, budget, wall)
    except Exception as e:  # whatever is wrong with one part's output, the others are still reported
        return {**entry, "status": "failed", "error": f"its output could not be read: {e!r}\n{tail(text, 10)}"}
    return {**entry, "status": "ok", "results": results}


def write(report: dict, out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)  # a check stopped mid-way leaves the parts done so far, never a cut file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="every part in seconds on the CPU (a test of the check)")
    parser.add_argument("--data-dir", default="../shared/data",
                        help="the folder holding multi30k/ and cifar10/cifar10-jpg.tar.gz (default: ../shared/data)")
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file; the logs go beside it")
    parser.add_argument("--work-dir", default=None, help="where the runs go (a fresh folder in it; default: a temp)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}; none")
    parser.add_argument("--budget", type=float, default=None, help=f"seconds for the parts run (default "
                        f"{DEFAULT_BUDGET}, --tiny {TINY_BUDGET}), shared in proportion to {SHARES}")
    parser.add_argument("--multi30k-epochs", type=int, default=10, help="the recipe's are 20 (default: 10, to fit)")
    parser.add_argument("--multi30k-precision", default="32",
                        help="the recipe's is 32 (the default); bf16-mixed is untried with its GRUs")
    parser.add_argument("--cifar-epochs", dest="cifar10_epochs", type=int, default=15,
                        help="the recipe's are 30 (default: 15, to fit)")
    parser.add_argument("--keep", action="append", default=[], metavar="JSON",
                        help="an earlier check's JSON: its parts not run now are copied in (to join split runs)")
    args = parser.parse_args(argv)
    parts = [] if args.parts in ("", "none") else args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: {', '.join(unknown)} unknown; choose from {', '.join(PARTS)}")
    parts = [p for p in PARTS if p in parts]
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gradlab-gpu-check-", dir=args.work_dir))
    data_dir = Path(args.data_dir).resolve()
    budget = args.budget or (TINY_BUDGET if args.tiny else DEFAULT_BUDGET)
    scale = budget / max(1, sum(SHARES[p] for p in parts))

    start = time.perf_counter()
    report = {"check": "gradlab GPU check (benchmarks/gpu_check.py)", "mode": "tiny" if args.tiny else "full",
              "started": datetime.now().isoformat(timespec="seconds"), "command": shlex.join([sys.argv[0], *(
                  argv if argv is not None else sys.argv[1:])]), "budget_s": budget, "data_dir": str(data_dir),
              "work_dir": str(work), "environment": environment(), "parts": {}, "complete": False}
    for earlier in args.keep:
        kept = json.loads(Path(earlier).read_text())
        for name, entry in kept.get("parts", {}).items():
            if name not in parts:
                report["parts"][name] = {**entry, "kept_from": {"file": earlier, "started": kept.get("started"),
                                                               "environment": kept.get("environment")}}
    shared_data = data_dir
    # --tiny: the small copy of the data is cut while the first part (which needs none) runs
    tiny = ThreadPoolExecutor(1).submit(tiny_data, shared_data, work / "tiny_data") if args.tiny and parts else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a time limit around the check: record, then stop
    slack = 0.0  # what the parts before left unused (or overran), carried to the next
    for part in parts:
        timeout = SHARES[part] * scale + slack
        log = out.with_name(f"{out.stem}.{part}.log")
        began = time.perf_counter()
        gone = [f for f in NEEDS[part] if not (shared_data / f).is_file()]
        try:
            if gone:
                entry = {"status": "failed", "error": f"{shared_data} lacks {', '.join(gone)} (--data-dir)"}
            elif timeout < 10:
                entry = {"status": "failed", "error": f"no time left of the {budget:.0f} s budget"}
            else:
                data_dir = tiny.result() if tiny and NEEDS[part] else data_dir
                entry = check_part(part, args, data_dir, work, timeout, log)
        except Exception as e:  # a part that cannot even start is one failed part; the check goes on
            entry = {"status": "failed", "error": repr(e)}
        except BaseException as e:  # SystemExit from SIGTERM, KeyboardInterrupt: the JSON says where it stopped
            report["parts"][part] = {"status": "failed", "error": f"the check was stopped during this part ({e!r})",
                                     "log": log.name}
            report["wall_s"] = round(time.perf_counter() - start, 1)
            write(report, out)
            raise
        slack = timeout - (time.perf_counter() - began)
        report["parts"][part] = entry
        report["wall_s"] = round(time.perf_counter() - start, 1)
        write(report, out)
        shown = entry.get("results") or entry.get("note") or tail(entry.get("error", ""), 3)
        print(f"[gpu_check] {part}: {entry['status']} ({entry.get('wall_s', 0)} s) {shown}", flush=True)
    failed = [p for p, e in report["parts"].items() if e["status"] == "failed"]
    report.update(complete=True, ok=not failed, failed=failed, wall_s=round(time.perf_counter() - start, 1))
    write(report, out)
    print(f"[gpu_check] {'all parts ok' if not failed else 'failed: ' + ', '.join(failed)}; "
          f"{report['wall_s']} s; {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
