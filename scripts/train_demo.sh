#!/usr/bin/env bash
# Reproduce the bundled samkit-demo weights exactly (same seeds, config and steps).
#
#   bash scripts/train_demo.sh [RUN_DIR]
#
# 1. writes 1600 synthetic 256x256 training images (generator seed 1) in SA-1B layout;
# 2. writes the initial weights (scripts/init_demo.py: seeded random weights with
#    position-aligned decoder cross-attention, see its docstring);
# 3. trains samkit-demo from them: phase 1, scripts/demo_train.json, steps 0-799 of an
#    1800-step cosine schedule; phase 2 resumes the step-800 state with
#    scripts/demo_train_phase2.json, a 1300-step schedule (the run was shortened at step
#    800 to fit the session; the lr is a pure function of the step, so this is exact);
# 4. revives multimask output 2, which collapsed in phases 1-2 (it predicted the whole
#    image, so the best-of-three loss never trained it): scripts/revive_demo_output.py
#    makes it a noisy copy of output 3; phase 3 then trains from that file with
#    scripts/demo_train_phase3.json (seed 1, lr 4e-4, 1800-step cosine; the shipped run
#    was interrupted at step 1300 and resumed from its saved state, which replays the
#    same steps);
# 5. phase 4 continues from the fp16 export of phase 3 on 2000 new images (generator
#    seed 2): scripts/demo_train_phase4.json (seed 2, lr 3e-4, 4000-step cosine) for
#    steps 0-1749, then resumed from the step-1750 state on a 3200-step schedule
#    (scripts/demo_train_phase4b.json; shortened to fit the session, as phase 2);
# 6. phase 5 continues from the fp16 export of phase 4 on 2000 more new images
#    (generator seed 3): scripts/demo_train_phase5.json (seed 3, lr 2e-4, 4000-step
#    cosine, run straight through);
# 7. phases 6 to 10 continue the same way, each from the fp16 export of the phase
#    before on 2000 more new images (generator seeds 4 to 8):
#    scripts/demo_train_phase{6,7,8,9,10}.json (seeds 4 to 8, lr 1e-4, 4000-step
#    cosine, run straight through);
# 8. copies phase 10's fp16 safetensors export into the package.
# The shipped run was made before `--resume` applied the resumed config's lr to the
# restored optimizer: the first resumed step (step 801 of phase 2, 1751 of phase 4) ran at
# the earlier schedule's lr (3.27e-4, 1.88e-4) instead of the new one's (2.01e-4,
# 1.40e-4), so a rerun now differs from the shipped weights from those steps on.
# On 2 CPU cores the training takes about 12.5 hours; add `--device cuda` to train on a GPU
# (results then differ in the last bits from the CPU run).
set -euo pipefail
RUN=${1:-runs/samkit-demo}
shift || true
samkit synth "$RUN/data" --n 1600 --seed 1
python scripts/init_demo.py "$RUN/init.pt" --seed 0
samkit train "$RUN/data" --config scripts/demo_train.json --init-checkpoint "$RUN/init.pt" \
    --out "$RUN/train" "$@"
cp "$RUN/train/trainer_state.pt" "$RUN/state_800.pt"
samkit train "$RUN/data" --config scripts/demo_train_phase2.json \
    --init-checkpoint "$RUN/init.pt" --resume "$RUN/state_800.pt" --out "$RUN/train" "$@"
python scripts/revive_demo_output.py "$RUN/train/model_final.pt" "$RUN/revived.pt" \
    --dead 2 --source 3 --noise 0.01 --seed 0
samkit train "$RUN/data" --config scripts/demo_train_phase3.json \
    --init-checkpoint "$RUN/revived.pt" --out "$RUN/train3" "$@"
# Phase 4 starts from the fp16 export of phase 3 (the file shipped until 2026-12-07).
python scripts/export_demo.py "$RUN/train3/model_final.pt" "$RUN/phase3.safetensors"
samkit synth "$RUN/data4" --n 2000 --seed 2
samkit train "$RUN/data4" --config scripts/demo_train_phase4.json --max-steps 1750 \
    --init-checkpoint "$RUN/phase3.safetensors" --out "$RUN/train4" "$@"
cp "$RUN/train4/trainer_state.pt" "$RUN/state4_1750.pt"
samkit train "$RUN/data4" --config scripts/demo_train_phase4b.json \
    --init-checkpoint "$RUN/phase3.safetensors" --resume "$RUN/state4_1750.pt" \
    --out "$RUN/train4" "$@"
# Phases 5 to 10 each start from the fp16 export of the phase before (each such file was
# the shipped model on 2026-12-07 until the next phase) and train on 2,000 new images
# (generator seed: the phase number minus 2).
python scripts/export_demo.py "$RUN/train4/model_final.pt" "$RUN/phase4.safetensors"
for phase in 5 6 7 8 9 10; do
    samkit synth "$RUN/data$phase" --n 2000 --seed $((phase - 2))
    samkit train "$RUN/data$phase" --config "scripts/demo_train_phase$phase.json" \
        --init-checkpoint "$RUN/phase$((phase - 1)).safetensors" --out "$RUN/train$phase" "$@"
    python scripts/export_demo.py "$RUN/train$phase/model_final.pt" "$RUN/phase$phase.safetensors"
done
cp "$RUN/phase10.safetensors" src/samkit/assets/samkit-demo.safetensors
