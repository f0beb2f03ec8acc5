#!/usr/bin/env bash
# run_all.sh — regenerates the small DiffusionVL, its AR parent, their evals, the two held-out sets
# and the engine fixtures from one seed. Full run ≈ 2 h on 2 idle cores; SMOKE=1 runs every
# stage at toy scale in a few minutes.
#
#   nice -n 15 train/run_all.sh [OUT]          (OUT defaults to train/out, which git ignores)
#
# Needs Debian's PyTorch stack for /usr/bin/python3 (not the pyenv python first on PATH):
#   apt-get update && apt-get install -y python3-torch python3-pil python3-numpy libopenblas0-openmp
# and node with the package's node_modules (`npm ci`): the tokenizer cross-check against
# @huggingface/tokenizers, and render_svg.mjs (sharp), the second renderer that draws the
# unseen-renderer held-out set.
# Knobs (environment): SEED, PRESET (full|tiny), BATCH, AR_STEPS, AR_SCHEDULE_BASE, AR_EXTEND_FROM,
# AR_LR, DIFF_STEPS, DIFF_LR,
# EVAL_N (final evals, in-distribution), UNSEEN_N (unseen-renderer set), EVAL_DURING (held-out
# samples scored every 500 steps), CHOICE_N (prompts decode_choice.py scores), FIX_PER_KIND, THREADS,
# DIFFUSIONVL_ADDON (set: also check that the engine reproduces the fixtures), INSTALL (1, the
# default except with SMOKE=1: copy the result into models/, examples/, test/fixtures/trained/).
# Rerunning with the same OUT skips finished stages and resumes an interrupted one; use a fresh OUT
# for a fresh run.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$HERE/out}"
PY=/usr/bin/python3

if [[ "${SMOKE:-0}" == 1 ]]; then
  : "${PRESET:=tiny}" "${BATCH:=8}" "${AR_STEPS:=40}" "${AR_SCHEDULE_BASE:=30}" "${AR_EXTEND_FROM:=20}" "${AR_FINE_STEPS:=20}" "${DIFF_STEPS:=40}" "${EVAL_N:=12}" "${UNSEEN_N:=12}" "${CHOICE_N:=8}" "${FIX_PER_KIND:=1}" "${EVAL_DURING:=4}" "${INSTALL:=0}"
fi
SEED="${SEED:-0}"; PRESET="${PRESET:-full}"; BATCH="${BATCH:-32}"
AR_STEPS="${AR_STEPS:-9000}"; AR_LR="${AR_LR:-2e-3}"
# The shipped run's AR schedule: planned for 6000 steps, lengthened at step 3750 to 9000 (from
# there a cosine from that step's learning rate to 10 %; train_ar.py lr_at). AR_SCHEDULE_BASE=0:
# one plain cosine over AR_STEPS.
AR_SCHEDULE_BASE="${AR_SCHEDULE_BASE:-6000}"; AR_EXTEND_FROM="${AR_EXTEND_FROM:-3750}"
# Two picture resolutions, as staged VLM recipes do: stage 1 learns the task on pictures of
# 150²..180² pixels (a square one becomes 168², 6×6 merged tokens: cheap steps), stage 1b goes on
# at 210²..238² (224², 8×8), where a shape 10 % of the short side spans 22 px instead of 17 —
# square ↔ circle confusions of small shapes were the largest error left at 168² (README.md).
# Everything after stage 1 (the child, decoder choice, evals, export, fixtures) runs at the fine
# bounds, which config.json and preprocessor_config.json record.
BASE_MIN_PIXELS="${BASE_MIN_PIXELS:-22500}"; BASE_MAX_PIXELS="${BASE_MAX_PIXELS:-32400}"
FINE_MIN_PIXELS="${FINE_MIN_PIXELS:-44100}"; FINE_MAX_PIXELS="${FINE_MAX_PIXELS:-56644}"
AR_FINE_STEPS="${AR_FINE_STEPS:-1500}"; AR_FINE_LR="${AR_FINE_LR:-5e-4}"
DIFF_STEPS="${DIFF_STEPS:-4000}"; DIFF_LR="${DIFF_LR:-1e-3}"
INSTALL="${INSTALL:-1}"; EVAL_N="${EVAL_N:-300}"; UNSEEN_N="${UNSEEN_N:-400}"; CHOICE_N="${CHOICE_N:-300}"
EVAL_DURING="${EVAL_DURING:-100}"; FIX_PER_KIND="${FIX_PER_KIND:-5}"; THREADS="${THREADS:-2}"
# Fixed thread count: float reductions (and so the weights) depend on it. PASSIVE: OpenMP workers
# sleep instead of spinning, which matters on a shared machine (spinning made steps 10× slower).
export OMP_NUM_THREADS="$THREADS" OMP_WAIT_POLICY=PASSIVE

mkdir -p "$OUT"
exec > >(tee -a "$OUT/run_all.log") 2>&1
echo "run_all: $(date -u) OUT=$OUT SEED=$SEED PRESET=$PRESET BATCH=$BATCH AR_STEPS=$AR_STEPS AR_FINE_STEPS=$AR_FINE_STEPS DIFF_STEPS=$DIFF_STEPS THREADS=$THREADS"
cd "$HERE"
t0=$SECONDS
stage() { echo "== $1 ($((SECONDS - t0)) s)"; }

stage selftest
$PY selftest.py

stage tokenizer
# (Re)built every time: deterministic, and the later stages must see exactly these files.
$PY tokenizer.py --out "$OUT/tokenizer" --seed "$SEED"
if command -v node >/dev/null; then
  (cd "$HERE/.." && node train/check_tokenizer.mjs "$OUT/tokenizer" "$OUT/tokenizer/cases.json")
else
  echo "node not found: tokenizer cross-check skipped"
fi

# A stage whose model.safetensors exists is done and skipped; an interrupted one (resume.pt left)
# continues where it stopped with identical results (--resume), so the 2 h can be split.
done_stage() { [[ -f "$1/model.safetensors" && ! -f "$1/resume.pt" ]]; }

stage "stage 1: AR parent at the base resolution"
done_stage "$OUT/ar_base" && echo "already trained: $OUT/ar_base" || \
TRAIN_MIN_PIXELS="$BASE_MIN_PIXELS" TRAIN_MAX_PIXELS="$BASE_MAX_PIXELS" \
$PY train_ar.py --tok "$OUT/tokenizer" --out "$OUT/ar_base" --seed "$SEED" --preset "$PRESET" --batch "$BATCH" \
  --steps "$AR_STEPS" --schedule-base-steps "$AR_SCHEDULE_BASE" --schedule-extend-from "$AR_EXTEND_FROM" \
  --lr "$AR_LR" --threads "$THREADS" --eval-n "$EVAL_DURING" --resume

export TRAIN_MIN_PIXELS="$FINE_MIN_PIXELS" TRAIN_MAX_PIXELS="$FINE_MAX_PIXELS"
stage "stage 1b: AR parent at the fine resolution"
# New samples (index base 2 000 000, past stage 1's), a short warmup and its own cosine.
done_stage "$OUT/ar" && echo "already trained: $OUT/ar" || \
$PY train_ar.py --tok "$OUT/tokenizer" --out "$OUT/ar" --init "$OUT/ar_base" --index-base 2000000 --seed "$SEED" \
  --batch "$BATCH" --steps "$AR_FINE_STEPS" --lr "$AR_FINE_LR" --warmup 50 --threads "$THREADS" --eval-n "$EVAL_DURING" --resume

stage "stage 2: DiffusionVL"
done_stage "$OUT/diffusionvl" && echo "already trained: $OUT/diffusionvl" || \
$PY train_diffusion.py --tok "$OUT/tokenizer" --init "$OUT/ar" --out "$OUT/diffusionvl" --seed "$SEED" \
  --batch "$BATCH" --steps "$DIFF_STEPS" --lr "$DIFF_LR" --threads "$THREADS" --eval-n "$EVAL_DURING" --resume

stage "decoder choice"
# The child's default decoder (generation_config.json): the best dynamic setting within 0.45
# forwards per answer token on the in-distribution held-out prompts.
[[ -f "$OUT/diffusionvl/decode_choice.json" ]] && echo "already chosen: $(cat "$OUT/diffusionvl/generation_config.json" | tr -d '\n ')" || \
$PY decode_choice.py --model "$OUT/diffusionvl" --tok "$OUT/tokenizer" --n "$CHOICE_N" --seed "$SEED" --threads "$THREADS"

stage "held-out sets"
# In-distribution: the 'heldout' split through the training renderer; unseen renderer: the
# 'unseen' split (picture kinds) drawn by render_svg.mjs, never seen in training.
$PY export.py heldout --dst "$OUT/ship/models/shapes-heldout" --seed "$SEED" --n "$EVAL_N"
$PY export.py unseen --dst "$OUT/ship/models/shapes-heldout-unseen" --seed "$SEED" --n "$UNSEEN_N"

stage evals
# PyTorch, f32 weights: parent greedy AR, child with its chosen decoder, on both sets.
for set in shapes-heldout shapes-heldout-unseen; do
  $PY eval.py --model "$OUT/ar" --tok "$OUT/tokenizer" --mode ar --set "$OUT/ship/models/$set" --n 1000 \
    --threads "$THREADS" --out "$OUT/ar/eval_$set.json"
  $PY eval.py --model "$OUT/diffusionvl" --tok "$OUT/tokenizer" --mode diffusion --decoder-from-config \
    --set "$OUT/ship/models/$set" --n 1000 --threads "$THREADS" --out "$OUT/diffusionvl/eval_$set.json"
done

stage export
# What ships: bf16 copies of both models (the held-out sets are already there), examples.
$PY export.py model --src "$OUT/diffusionvl" --dst "$OUT/ship/models/shapes-diffusionvl" --dtype bf16
$PY export.py model --src "$OUT/ar" --dst "$OUT/ship/models/shapes-ar" --dtype bf16
$PY export.py examples --dst "$OUT/ship/examples"

stage fixtures
# From the shipped bf16 weights (upcast exactly to float64): the engine is checked on what it loads.
$PY fixtures.py --model "$OUT/ship/models/shapes-diffusionvl" --parent "$OUT/ship/models/shapes-ar" \
  --tok "$OUT/tokenizer" --out "$OUT/ship/fixtures" --seed "$SEED" --per-kind "$FIX_PER_KIND" --threads "$THREADS"

# The engine must reproduce the fixtures; needs a built addon (skipped when DIFFUSIONVL_ADDON is unset).
if [[ -n "${DIFFUSIONVL_ADDON:-}" ]]; then
  stage "engine check"
  (cd "$HERE/.." && npx tsx train/check_engine.ts "$OUT/ship/models/shapes-diffusionvl" "$OUT/ship/fixtures" "$OUT/ship/models/shapes-ar")
fi

# INSTALL=1 (the default for a full run): copy into the package — models/, examples/ and the CI
# fixtures test/fixtures/trained/ — replacing what was there.
if [[ "$INSTALL" == 1 ]]; then
  stage install
  ROOT="$HERE/.."
  for m in shapes-diffusionvl shapes-ar shapes-heldout shapes-heldout-unseen; do
    rm -rf "$ROOT/models/$m"; mkdir -p "$ROOT/models"; cp -r "$OUT/ship/models/$m" "$ROOT/models/$m"
  done
  mkdir -p "$ROOT/examples"; cp "$OUT/ship/examples/"* "$ROOT/examples/"
  rm -rf "$ROOT/test/fixtures/trained"; cp -r "$OUT/ship/fixtures" "$ROOT/test/fixtures/trained"
  echo "installed into models/, examples/, test/fixtures/trained/"
fi

stage done
$PY - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
for model in ('ar', 'diffusionvl'):
    for set_ in ('shapes-heldout', 'shapes-heldout-unseen'):
        r = json.load(open(f'{out}/{model}/eval_{set_}.json'))
        print(f"{model} on {set_}: exact match {r['exact_match']:.3f} over {r['n']}, "
              f"{r['forwards_per_token']:.3f} forwards/token  {r['per_kind']}")
PYEOF
