#!/usr/bin/env bash
# Dataset tokenisation throughput on this machine, side by side in one run and on the same
# thread count: tessera's raw batched encode (the ceiling), the `tessera dataset tokenize`
# pipeline, and a plain Python loop over the reference package.
#
#   benches/compare/dataset_throughput.sh CORPUS_DIR SNAC_DIR MIMI_DIR [THREADS]
#
# CORPUS_DIR: e.g. from benches/compare/make_speech_corpus.sh; SNAC_DIR / MIMI_DIR: full-size
# checkpoints in the hub layout (scripts/reference/snac_full_check.py and mimi_full_check.py
# write them with random weights; real weights run at the same speed).
set -euo pipefail
corpus=${1:?corpus dir}; snac=${2:?snac dir}; mimi=${3:?mimi dir}; threads=${4:-2}
py=${PYTHON:-/work/refenv/bin/python}
cd "$(dirname "$0")/../.."
cargo build --release -q -p tessera-benches --example dataset_throughput
export RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads OMP_NUM_THREADS=$threads
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for pair in "snac:$snac" "mimi:$mimi"; do
    family=${pair%%:*}; dir=${pair#*:}
    target/release/examples/dataset_throughput "$dir" "$corpus" parquet "${REPS:-3}" | tee "$tmp/$family.rust.json"
    "$py" benches/compare/dataset_python_loop.py "$family" "$dir" "$corpus" "$tmp/py-$family" "$threads" \
        | tee "$tmp/$family.py.json"
    "$py" - "$tmp/$family.rust.json" "$tmp/$family.py.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = json.load(open(sys.argv[2]))
print(f"{r['codec']}: {r['audio_seconds']/3600:.3f} h of audio, {r['threads']} threads")
print(f"  raw batched encode  {r['raw_audio_hours_per_hour']:8.1f} h/h")
print(f"  tessera pipeline    {r['pipeline_audio_hours_per_hour']:8.1f} h/h  ({100*r['pipeline_vs_raw']:.0f}% of raw)")
print(f"  python loop         {p['audio_hours_per_hour']:8.1f} h/h  (tessera pipeline {r['pipeline_audio_hours_per_hour']/p['audio_hours_per_hour']:.1f}x)")
PY
done
