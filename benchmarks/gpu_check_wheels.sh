#!/usr/bin/env bash
# What benchmarks/gpu_check.py needs on the device machine (nvidia-h200), which has Python 3.12, torch, lightning,
# torchmetrics, sacrebleu and tokenizers but not the packages below, and cannot download anything:
#   .whl/        the missing packages as wheels, at the versions of uv.lock, their hashes checked against it
#                (antlr4-python3-runtime and docopt publish no wheel: their checked sdists are built into one here)
#   .gpu_check/  data/multi30k/{train,val,test_2016_flickr}.{de,en}.gz and data/cifar10/cifar10-jpg.tar.gz, copied
#                from ../shared/data (the device gets the repository only), and source.json (the commit: the device's
#                copy has no .git)
# Both are ignored through .git/info/exclude and travel as `carry`; gpu_check.py's docstring gives the `run` call.
#   bash benchmarks/gpu_check_wheels.sh [DATA_DIR]      # DATA_DIR: default ../shared/data
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
# hydra-core, omegaconf, antlr4: every run of the app; the rest are what the device lacks for the other tasks'
# defaults (translation's numbers: num2words, docopt, babel; speech: soundfile, cffi, pycparser, espeakng-loader; rl:
# gymnasium, farama-notifications), carried too so that a session can run more than the check
PACKAGES="hydra-core omegaconf antlr4-python3-runtime num2words docopt babel soundfile cffi pycparser espeakng-loader
gymnasium farama-notifications"

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for p in /.whl/ /.gpu_check/; do
    grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# uv.lock -> requirements with every hash the lock lists (pip then refuses any other file); the entry that applies to
# CPython 3.12 on x86-64 Linux where the lock holds several versions of one package
python3 - "$tmp" $PACKAGES <<'EOF'
import sys, tomllib
from packaging.markers import Marker
out, names = sys.argv[1], sys.argv[2:]
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
       "platform_machine": "x86_64", "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "os_name": "posix"}
lock = tomllib.load(open("uv.lock", "rb"))
for name in names:
    found = [p for p in lock["package"] if p["name"] == name and (
        "resolution-markers" not in p or any(Marker(m).evaluate(env) for m in p["resolution-markers"]))]
    if len(found) != 1:
        sys.exit(f"uv.lock: {len(found)} versions of {name} apply to CPython 3.12 on Linux")
    p = found[0]
    kind = "wheel" if p.get("wheels") else "sdist"
    hashes = [w["hash"] for w in p.get("wheels", [])] + ([p["sdist"]["hash"]] if "sdist" in p else [])
    with open(f"{out}/{kind}.txt", "a") as f:
        f.write(f"{name}=={p['version']} " + " ".join(f"--hash={h}" for h in hashes) + "\n")
EOF

quiet() {  # pip, without the warnings this machine's pip.conf gives about its local indexes
    "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
platforms=""
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=" --platform $tag"
done
mkdir -p "$tmp/new"
# shellcheck disable=SC2086
quiet python3 -m pip download -q --no-deps --require-hashes --only-binary=:all: --python-version 3.12 --implementation cp \
    $platforms -d "$tmp/new" -r "$tmp/wheel.txt"
if [[ -f "$tmp/sdist.txt" ]]; then
    quiet python3 -m pip download -q --no-deps --require-hashes --no-binary=:all: -d "$tmp/sdist" -r "$tmp/sdist.txt"
    quiet python3 -m pip wheel -q --no-deps -w "$tmp/new" "$tmp"/sdist/*
fi

mkdir -p .whl
for f in "$tmp"/new/*.whl; do
    rm -f .whl/"$(basename "$f" | cut -d- -f1)"-*.whl  # one version of each: two stop the whole install there
    mv "$f" .whl/
done

mkdir -p .gpu_check/data/multi30k .gpu_check/data/cifar10
for split in train val test_2016_flickr; do
    for lang in de en; do
        cp "$DATA/multi30k/$split.$lang.gz" .gpu_check/data/multi30k/
    done
done
cp "$DATA/cifar10/cifar10-jpg.tar.gz" .gpu_check/data/cifar10/
dirty=false
[[ -z "$(git status --porcelain --untracked-files=no)" ]] || dirty=true
printf '{"commit": "%s", "dirty": %s, "written": "%s"}\n' "$(git rev-parse HEAD)" "$dirty" \
    "$(date -Iseconds)" >.gpu_check/source.json

ls -l .whl
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
echo "wheels $(du -sb .whl | cut -f1) bytes, data $(du -sb .gpu_check | cut -f1) bytes, the rest of the tree" \
     "$tree bytes; $(( ($(du -sb .whl | cut -f1) + $(du -sb .gpu_check | cut -f1) + tree) / 1048576 )) MiB of the" \
     "64 MiB that travel"
