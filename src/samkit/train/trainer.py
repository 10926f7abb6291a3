"""Fine-tuning loop for SAM, MobileSAM and SAM 2 / 2.1 on images, with the paper's
simulated interaction.

One training step (``grad_accum_steps`` micro-batches of ``batch_size`` images):

1. per image, ``masks_per_image`` non-empty masks are drawn without replacement;
2. the image embedding comes from the :class:`EmbeddingCache` (frozen encoder) or from
   the encoder with gradient (trainable encoder);
3. the masks of one image are prompted together: round 0 gives each mask a random
   foreground point or a noisy box (:class:`InteractiveSimulator`), later rounds add one
   error-region click per mask (or nothing, per :func:`make_schedule`) and feed back the
   previous round's chosen low-res logits (detached) as ``mask_input``. Each round runs
   one decoder call per *prompt kind* (masks with a box / with a single point / with
   several points), batching the masks of that kind; a single-point prompt asks for the
   3 ambiguity-aware outputs, any other prompt for one. Masks whose click round found
   no error get a padding point (label ``-1``) so the batch stays rectangular;
4. :func:`sam_loss` against the ground truth mapped to the padded model-input frame at
   the logits' 256x256 resolution is summed over rounds and averaged over masks and
   images; the candidate with the highest predicted IoU is the one fed back.

SAM 2 models train the same way on still images (their image path: ``no_mem_embed``
added, no memory), with SAM 2's loss: the IoU head learns with the mean absolute error
and the object-score head with a binary cross-entropy (every trained mask is a present
object), weights 20 : 1 : 1 : 1 (SAM 2 paper, App. D). Two choices differ from the
official SAM 2 trainer, which computes the mask losses on the logits upsampled to the
input size and trains on video clips with memory: here the losses are taken at the
low-res logits' resolution, as for SAM 1, and only the image path is trained (the memory
modules get no gradient; :class:`samkit.train.VideoTrainer` trains those).

All randomness of a step (image order, mask choice, prompts) comes from numpy
generators seeded by ``(seed, step, micro_batch)``, so a resumed run replays exactly the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.types import Sample
from samkit.errors import InvalidConfig
from samkit.modeling import SamModel
from samkit.modeling.sam2 import Sam2
from samkit.train.checkpoints import (
    atomic_torch_save,
    check_run_folder,
    load_initial_model,
    load_trainer_state,
    make_run_folder,
    metrics_record,
    save_weights,
    start_run_folder,
)
from samkit.train.config import TrainConfig, lr_factor
from samkit.train.embedding_cache import EmbeddingCache, preprocess_image
from samkit.train.losses import check_finite, mask_iou, resize_targets, sam_loss
from samkit.train.params import build_param_groups, freeze_by_prefix, set_hyperparameters
from samkit.train.prompts import InteractiveSimulator, Prompt
from samkit.train.sampling import training_indices

__all__ = [
    "Trainer",
    "atomic_torch_save",
    "build_param_groups",
    "load_initial_model",
    "save_weights",
]

_STATE_FORMAT = "samkit.train.TrainerState/1"
_METRICS = ("loss", "focal", "dice", "iou_loss", "score_loss", "iou")
_HYPER = ("lr_scale", "weight_decay", "betas")  # what resume() takes from the config


def _pad_points(prompts: list[Prompt]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack per-mask points to ``(B, P, 2)`` / ``(B, P)``, padding with label -1."""
    p_max = max(p.num_points for p in prompts)
    if p_max == 0:
        return None
    coords = np.zeros((len(prompts), p_max, 2), np.float32)
    labels = np.full((len(prompts), p_max), -1, np.int64)
    for i, p in enumerate(prompts):
        coords[i, : p.num_points] = p.points
        labels[i, : p.num_points] = p.labels
    return torch.from_numpy(coords), torch.from_numpy(labels)


class Trainer:
    """Fine-tune a :class:`Sam` or :class:`Sam2` on a sequence of :class:`Sample`.

    Args:
        config: the run's :class:`TrainConfig`.
        model: the model to train (moved to ``config.device``); ``None`` loads it with
            :func:`load_initial_model`.
        train_data: any ``Sequence[Sample]``.

    The image encoder is frozen (``requires_grad=False``, eval mode) when
    ``config.freeze_image_encoder``; its embeddings are then cached on disk (see
    :mod:`samkit.train.embedding_cache`; images are used without augmentation).
    Construction calls ``torch.manual_seed(config.seed)`` (so a model built by
    :func:`load_initial_model` with random weights is reproducible).

    Only images with a mask are drawn: their dataset indices are ``sample_indices``, how
    many others were skipped ``skipped_images`` (see
    :func:`~samkit.train.sampling.training_indices`, which warns about them once).

    Raises:
        InvalidDataset: ``train_data`` is empty or holds no mask at all.
        InvalidConfig: a ``freeze`` prefix matches no parameter, or nothing is left to
            train.
        OutputError: ``config.out_dir`` cannot be a writable folder (checked before the
            model is loaded, see :func:`~samkit.train.checkpoints.check_run_folder`; a
            refusal only creating it shows comes from the embedding cache or :meth:`fit`).
    """

    def __init__(
        self,
        config: TrainConfig,
        model: SamModel | None = None,
        train_data: Sequence[Sample] = (),
    ) -> None:
        check_run_folder(config.out_dir)
        self.sample_indices = training_indices(train_data)
        self.skipped_images = len(train_data) - len(self.sample_indices)
        self.config = config
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.model = (model if model is not None else load_initial_model(config)).to(self.device)
        self.train_data = train_data
        self.out_dir = Path(config.out_dir)
        self.step = 0
        self._continuing = False  # resumed, or fit() already wrote to out_dir
        if config.freeze_image_encoder:
            # everything the embedding depends on (SAM 2: also the decoder's conv_s0 /
            # conv_s1 and no_mem_embed), so that cached embeddings stay valid
            freeze_by_prefix(self.model, self.model.EMBEDDING_PREFIXES)
        freeze_by_prefix(self.model, config.freeze)
        self.param_groups = build_param_groups(self.model, config)
        if not self.param_groups:
            raise InvalidConfig("the model has no trainable parameters", field="freeze")
        self.optimizer = torch.optim.AdamW(
            self.param_groups, lr=config.lr, betas=tuple(config.betas), weight_decay=0.0
        )

        def factor(step: int) -> float:
            return lr_factor(config, step)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.embedding_cache: EmbeddingCache | None = None
        if config.freeze_image_encoder and config.cache_embeddings:
            self.embedding_cache = EmbeddingCache(self.model, self.out_dir / "embeddings")
        self._perm_cache: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------- data
    def _image_index(self, position: int) -> int:
        """Dataset index of the ``position``-th image drawn (the images with masks,
        reshuffled every epoch)."""
        n = len(self.sample_indices)
        epoch, offset = divmod(position, n)
        if self._perm_cache is None or self._perm_cache[0] != epoch:
            perm = np.random.default_rng([self.config.seed, epoch, 0x5A]).permutation(n)
            self._perm_cache = (epoch, perm)
        return self.sample_indices[int(self._perm_cache[1][offset])]

    def _autocast(self) -> Any:
        if not self.config.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.config.freeze_image_encoder:
            self.model.image_encoder.eval()

    def image_embedding(self, sample: Sample) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(1, C, h, w)`` embedding of ``sample.image`` and its high-resolution features
        (SAM 2's two maps; empty for SAM 1): cached, no-grad or with grad."""
        if self.embedding_cache is not None:
            return self.embedding_cache.get_embedding(sample.image_id, sample.image)
        x, _, _ = preprocess_image(self.model, sample.image)
        if self.config.freeze_image_encoder:
            with torch.no_grad():
                return self.model.embed_image(x)
        with self._autocast():
            return self.model.embed_image(x)

    def _decode(
        self,
        embedding: torch.Tensor,
        high_res: tuple[torch.Tensor, ...],
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Float32 low-res logits ``(B, K, h, w)``, predicted IoU ``(B, K)`` and, for SAM 2,
        object-score logits ``(B, 1)`` (``None`` for SAM 1)."""
        with self._autocast():
            if isinstance(self.model, Sam2):
                out = self.model.decode_full(
                    embedding,
                    points=points,
                    boxes=boxes,
                    mask_input=mask_input,
                    multimask_output=multimask,
                    high_res_features=high_res,
                )
                return out.masks.float(), out.iou.float(), out.object_score_logits.float()
            logits, iou = self.model.decode(
                embedding,
                points=points,
                boxes=boxes,
                mask_input=mask_input,
                multimask_output=multimask,
            )
        return logits.float(), iou.float(), None

    def targets(self, masks: np.ndarray, input_size: tuple[int, int]) -> torch.Tensor:
        """``(B, H, W)`` bool masks -> ``(B, 1, 256, 256)`` float targets in the padded
        model-input frame (bilinear resize to ``input_size``, threshold 0.5, zero-pad to
        ``image_size``, then :func:`resize_targets` to the low-res logits' size)."""
        m = torch.from_numpy(np.ascontiguousarray(masks)).to(self.device)[:, None].float()
        if tuple(m.shape[-2:]) != tuple(input_size):
            m = F.interpolate(m, size=input_size, mode="bilinear", align_corners=False)
            m = (m > 0.5).float()
        s = self.model.image_size
        m = F.pad(m, (0, s - input_size[1], 0, s - input_size[0]))
        low_res = 4 * self.model.prompt_encoder.image_embedding_size[0]
        return resize_targets(m, low_res)

    # ------------------------------------------------------------------- step
    def image_loss(
        self, sample: Sample, rng: np.random.Generator
    ) -> dict[str, torch.Tensor] | None:
        """Simulated-interaction loss of one image (``None`` if it has no usable mask).

        Returns ``loss`` (with gradient: round losses summed, masks averaged) and the
        detached ``focal``, ``dice``, ``iou_loss``, ``score_loss`` (SAM 2's object-score
        term, 0 for SAM 1; per-round means) and ``iou`` (mean true IoU of the fed-back
        candidate at the last round, 256x256 frame).
        """
        cfg = self.config
        masks = np.asarray(sample.masks).astype(bool, copy=False)
        usable = [i for i in range(masks.shape[0]) if masks[i].any()]
        if not usable:
            return None
        k = min(cfg.masks_per_image, len(usable))
        chosen = np.sort(rng.choice(np.asarray(usable), size=k, replace=False))
        gt = masks[chosen]
        original_size = (int(gt.shape[1]), int(gt.shape[2]))
        embedding, high_res = self.image_embedding(sample)
        input_size = self.model.input_size_for(original_size)
        target = self.targets(gt, input_size)
        sam2 = isinstance(self.model, Sam2)

        sim = InteractiveSimulator(cfg.num_rounds, rng=rng)
        plan = sim.schedule()
        prompts = [sim.first_prompt(g) for g in gt]
        prev: torch.Tensor | None = None  # (B, 1, h, w) detached fed-back logits
        pred: np.ndarray | None = None  # (B, H, W) bool, original frame
        total = torch.zeros((), device=self.device)
        sums = {"focal": 0.0, "dice": 0.0, "iou_loss": 0.0, "score_loss": 0.0}
        last_iou = torch.zeros(k, device=self.device)
        for r, adds in enumerate(plan):
            if r > 0 and adds and pred is not None:
                for i in range(k):
                    click = sim.next_point(gt[i], pred[i])
                    if click is not None:
                        prompts[i] = prompts[i].add_point(*click)
            frame = [p.to_input_frame(original_size, input_size) for p in prompts]
            groups: dict[tuple[bool, bool], list[int]] = {}
            for i, p in enumerate(frame):
                single = p.box is None and p.num_points == 1
                groups.setdefault((p.box is not None, single), []).append(i)
            new_prev = torch.empty(k, 1, *target.shape[-2:], device=self.device)
            for (has_box, single), members in sorted(groups.items()):
                idx = torch.as_tensor(members, device=self.device)
                pts = _pad_points([frame[i] for i in members])
                if pts is not None:
                    pts = (pts[0].to(self.device), pts[1].to(self.device))
                boxes = None
                if has_box:
                    boxes = torch.from_numpy(np.stack([frame[i].box for i in members]))
                    boxes = boxes.to(self.device)
                logits, iou_pred, scores = self._decode(
                    embedding,
                    high_res,
                    pts,
                    boxes,
                    None if prev is None else prev[idx],
                    single,
                )
                out = sam_loss(
                    logits,
                    iou_pred,
                    target[idx],
                    iou_loss="l1" if sam2 else "mse",
                    object_score_logits=scores,
                    # every chosen mask is non-empty at full resolution, even where it
                    # vanishes in the low-res target
                    object_present=torch.ones(len(members), dtype=torch.bool),
                )
                weight = len(members) / k
                total = total + weight * out.total
                sums["focal"] += weight * float(out.focal.detach())
                sums["dice"] += weight * float(out.dice.detach())
                sums["iou_loss"] += weight * float(out.iou.detach())
                sums["score_loss"] += weight * float(out.score.detach())
                pick = iou_pred.detach().argmax(dim=1)
                rows = torch.arange(len(members), device=self.device)
                sel = logits.detach()[rows, pick][:, None]
                new_prev[idx] = sel
                if r == len(plan) - 1:
                    last_iou[idx] = mask_iou(sel, target[idx])[:, 0]
            prev = new_prev
            if r + 1 < len(plan) and plan[r + 1]:
                full = self.model.postprocess_masks(prev, input_size, original_size)
                pred = (full[:, 0] > self.model.mask_threshold).cpu().numpy()
        n = len(plan)
        return {
            "loss": total,
            "focal": torch.tensor(sums["focal"] / n),
            "dice": torch.tensor(sums["dice"] / n),
            "iou_loss": torch.tensor(sums["iou_loss"] / n),
            "score_loss": torch.tensor(sums["score_loss"] / n),
            "iou": last_iou.mean().cpu(),
        }

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns its metrics (``step`` is the 1-based step count).

        ``lr`` is the lr of the step (``config.lr`` times the schedule's factor: what
        the optimizer uses for parameters of layer-decay scale 1), ``loss`` the mean over
        images of the round-summed loss, ``focal``/``dice``/``iou_loss``/``score_loss``
        per-round means, ``iou`` the mean true IoU at the last round, ``grad_norm`` the
        global gradient norm before clipping, ``images`` how many images gave a loss (0:
        an empty step, every drawn image's masks were empty; its metrics are 0).
        """
        cfg = self.config
        self._set_train_mode()
        self.optimizer.zero_grad(set_to_none=True)
        lr = cfg.lr * lr_factor(cfg, self.step)
        acc = dict.fromkeys(_METRICS, 0.0)
        count = 0
        for micro in range(cfg.grad_accum_steps):
            rng = np.random.default_rng([cfg.seed, self.step, micro])
            base = (self.step * cfg.grad_accum_steps + micro) * cfg.batch_size
            outs = []
            for j in range(cfg.batch_size):
                out = self.image_loss(self.train_data[self._image_index(base + j)], rng)
                if out is not None:
                    outs.append(out)
            if not outs:
                continue
            loss = torch.stack([o["loss"] for o in outs]).mean() / cfg.grad_accum_steps
            check_finite(loss, self.step + 1)
            loss.backward()
            for o in outs:
                for name in _METRICS:
                    acc[name] += float(o[name].detach())
            count += len(outs)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        max_norm = cfg.clip_grad_norm if cfg.clip_grad_norm else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if count else 0.0
        self.optimizer.step()  # parameters without a gradient (empty batch) are skipped
        self.scheduler.step()
        self.step += 1
        metrics = {name: acc[name] / max(count, 1) for name in _METRICS}
        return {"step": self.step, "lr": lr, **metrics, "grad_norm": grad_norm, "images": count}

    # -------------------------------------------------------------------- fit
    def fit(self, overwrite: bool = False) -> list[dict[str, float]]:
        """Train until ``max_steps``; returns the logged records.

        Appends averaged metrics to ``out_dir/metrics.jsonl`` every ``log_every`` steps
        (means over the steps of the window that had a loss; a record counts the others
        in ``empty_steps`` and is left out when there was none), saves
        ``out_dir/checkpoints/step_XXXXXXX.pt`` (model) and ``out_dir/trainer_state.pt``
        every ``save_every`` steps, and ``out_dir/model_final.pt`` plus the state at the
        end.

        A new run (no :meth:`resume`, no earlier :meth:`fit`) refuses an ``out_dir``
        that holds another run (``metrics.jsonl``, ``model_final.pt``,
        ``trainer_state.pt`` or ``checkpoints/step_*.pt``: :func:`previous_run_files
        <samkit.train.checkpoints.previous_run_files>`) unless ``overwrite``: those files
        are then deleted first, so the metrics log starts afresh and no step checkpoint
        of the old run remains (the embedding cache is kept: its files are keyed by the
        encoder weights). A resumed run appends to the folder's log.

        Raises:
            OutputError: ``out_dir`` holds another run and not ``overwrite``, or cannot
                be created or written.
            InvalidArgument: (a ``ValueError``) ``overwrite`` for a trainer that continues
                a run.
        """
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.config
        start_run_folder(
            self.out_dir, new=not self._continuing, overwrite=overwrite, keep=cfg.init_checkpoint
        )
        self._continuing = True
        records: list[dict[str, float]] = []
        window: list[dict[str, float]] = []
        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            disable=not cfg.progress,
        )
        with progress:
            task = progress.add_task("train", total=cfg.max_steps, completed=self.step, info="")
            while self.step < cfg.max_steps:
                t0 = time.perf_counter()
                metrics = self.train_step()
                metrics["time_s"] = time.perf_counter() - t0
                window.append(metrics)
                progress.update(
                    task,
                    completed=self.step,
                    info=f"loss {metrics['loss']:.4f} iou {metrics['iou']:.3f}",
                )
                if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    record = metrics_record(self.step, window, (*_METRICS, "grad_norm"))
                    if record is not None:
                        self._log(record)
                        records.append(record)
                    window = []
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint(self.out_dir / "checkpoints" / f"step_{self.step:07d}.pt")
                    self.save_state(self.out_dir / "trainer_state.pt")
        self.save_checkpoint(self.out_dir / "model_final.pt")
        self.save_state(self.out_dir / "trainer_state.pt")
        return records

    def _log(self, record: dict[str, float]) -> None:
        make_run_folder(self.out_dir)
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------ persistence
    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the model weights in the official layout (atomic): a plain state dict
        for SAM 1 / MobileSAM, ``{"model": state_dict}`` for SAM 2 (:func:`save_weights`).

        The keys are exactly ``model.state_dict()``'s, so
        ``samkit.load_model(name_or_config, checkpoint=path)`` loads it strictly.
        """
        return save_weights(self.model, path)

    def save_state(self, path: str | Path) -> Path:
        """Write everything needed to resume: model, optimizer, scheduler, step, RNGs."""
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_dict(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return atomic_torch_save(state, path)

    def resume(self, path: str | Path) -> None:
        """Restore a :meth:`save_state` file: the weights, the optimizer's moments, the
        step and the RNG states; with the saved run's config, training then continues
        exactly as it would have.

        The optimizer's hyper-parameters are this trainer's config's, not the state's:
        each parameter group gets ``config.lr`` times its layer-decay scale as its base lr
        (also the scheduler's), times ``lr_factor(config, step)`` as its current lr, and
        ``config.weight_decay`` (0 for the no-decay groups) and ``config.betas``. So a
        run resumed with another lr or schedule (``scripts/demo_train_phase2.json``)
        trains from the resumed step on with the lr it logs.

        With a frozen encoder the embedding cache is re-keyed to the loaded encoder
        weights: files computed with the same weights are reused, others recomputed.

        Raises:
            CheckpointError: ``path`` is unreadable, not a trainer state, the state of
                another model (``config.model``) or of a run with other trainable
                parameters (another ``freeze``), or its keys or shapes differ; the
                model, optimizer and step are then unchanged.
        """
        fresh = [{k: g[k] for k in _HYPER} for g in self.optimizer.param_groups]
        state = load_trainer_state(
            path,
            _STATE_FORMAT,
            "trainer",
            self.model,
            self.optimizer,
            model_name=self.config.model,
            required={"step": int, "scheduler": dict},
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        set_hyperparameters(self.optimizer, self.scheduler, fresh, self.config, self.step)
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if self.embedding_cache is not None:
            self.embedding_cache.refresh()
        self._continuing = True
