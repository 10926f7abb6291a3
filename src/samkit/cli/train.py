"""``samkit train``: fine-tune a SAM, MobileSAM or SAM 2 model on an SA-1B-layout or COCO dataset.

The run's settings are a :class:`~samkit.train.config.TrainConfig`: the defaults, then
the ``--config`` file (JSON or YAML), then the command-line options given (each option
left out keeps the file's / default value).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

import samkit
from samkit.cli.common import CliError, one_line, open_dataset, same_file
from samkit.errors import CheckpointError, OutputError, SamkitError


def _load_config(config_file: Path | None, overrides: dict[str, Any]) -> Any:
    """Defaults <- ``config_file`` <- the options actually given; validated."""
    from samkit.train.config import TrainConfig

    base: dict[str, Any] = {}
    if config_file is not None:
        try:
            base = TrainConfig.from_file(config_file).to_dict()
        except (ValueError, TypeError) as exc:
            message = str(exc)
            if str(config_file) not in message:
                message = f"{message} (in {config_file})"
            raise CliError(message) from exc
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.from_dict(base)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc


def _check_run_folder(
    out_dir: Path, init_checkpoint: str | None, resume: Path | None, overwrite: bool
) -> None:
    """Refuse a run folder that is a file or cannot be created or written, whose
    checkpoints would overwrite the ``--init-checkpoint`` the run starts from
    (``OUT/model_final.pt``, ``OUT/trainer_state.pt`` or a file in ``OUT/checkpoints/``),
    or that holds another run while neither ``--resume`` nor ``--overwrite`` is given."""
    from samkit.train.checkpoints import check_run_folder, previous_run_names

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"run folder (--out) {out_dir} is a file, not a folder")
    check_run_folder(out_dir)
    if resume is not None and overwrite:
        raise CliError(
            "--resume continues the run in --out and --overwrite replaces it: give one of them"
        )
    if init_checkpoint:
        _check_init_checkpoint(out_dir, init_checkpoint)
    names = previous_run_names(out_dir)
    if names and resume is not None and not _run_file(out_dir, resume, ("trainer_state.pt",)):
        raise OutputError(
            f"run folder (--out) {out_dir} already holds a run ({', '.join(names)}) and "
            f"--resume {resume} is not its state: continue that run with --resume "
            f"{out_dir / 'trainer_state.pt'}, or continue {resume}'s run in an empty --out"
        )
    if names and resume is None and not overwrite:
        state = out_dir / "trainer_state.pt"
        resume_hint = f"--resume {state}" if state.is_file() else "--resume STATE"
        raise OutputError(
            f"run folder (--out) {out_dir} already holds a run ({', '.join(names)}): "
            f"continue it with {resume_hint}, replace it with --overwrite, or choose "
            "another --out"
        )


def _run_file(out_dir: Path, path: Path, top_level: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of the files a run writes in ``out_dir``: ``OUT/<name>``
    for a name in ``top_level``, or anything in ``OUT/checkpoints/``."""
    if any(same_file(path, out_dir / name) for name in top_level):
        return True
    return (out_dir / "checkpoints").resolve() in path.resolve().parents


def _check_init_checkpoint(out_dir: Path, init_checkpoint: str) -> None:
    init = Path(init_checkpoint)
    if _run_file(out_dir, init, ("model_final.pt", "trainer_state.pt")):
        raise OutputError(
            f"--init-checkpoint {init} would be overwritten by the checkpoints of this run "
            f"in {out_dir}; copy it elsewhere or choose another --out"
        )


def train_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Dataset folder: SA-1B layout (image + same-name .json per image), or "
            "the images folder of a COCO dataset with --coco-annotations."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TrainConfig file (.json, or .yaml with PyYAML); options given here override it.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model name or alias to fine-tune (default sam-vit-b)."),
    ] = None,
    init_checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--init-checkpoint",
            help="Weights to start from (default: the model's published weights).",
        ),
    ] = None,
    pretrained: Annotated[
        bool | None,
        typer.Option(
            "--pretrained/--no-pretrained",
            help="Without --init-checkpoint, start from the published weights (default) "
            "or from random weights.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run folder: metrics, checkpoints, embedding cache."),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", help="Number of optimizer steps.")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    log_every: Annotated[
        int | None,
        typer.Option("--log-every", help="Append averaged metrics every N steps (0 = never)."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Images per micro-batch.")
    ] = None,
    masks_per_image: Annotated[
        int | None, typer.Option("--masks-per-image", help="Masks sampled per image and step.")
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option("--rounds", help="Simulated interaction rounds per mask (>= 3)."),
    ] = None,
    freeze_encoder: Annotated[
        bool | None,
        typer.Option(
            "--freeze-encoder/--train-encoder",
            help="Train only the prompt encoder and mask decoder (default), or everything.",
        ),
    ] = None,
    freeze: Annotated[
        list[str] | None,
        typer.Option(
            "--freeze",
            help="Also keep these parameters fixed, by checkpoint-key prefix (repeatable): "
            "'--freeze prompt_encoder.' trains the mask decoder alone.",
        ),
    ] = None,
    bf16: Annotated[
        bool | None,
        typer.Option("--bf16/--no-bf16", help="Run forward passes under bf16 autocast."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue from a trainer state file (OUT/trainer_state.pt): its weights, "
            "optimizer moments and step; the lr, schedule, weight decay and betas are this "
            "run's (the options and --config given now), and metrics are appended to "
            "OUT/metrics.jsonl.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Start a new run in an --out that holds one: its metrics.jsonl, "
            "model_final.pt, trainer_state.pt and checkpoints/step_*.pt are deleted first "
            "(the embedding cache is kept). Without it such an --out is refused.",
        ),
    ] = False,
    coco_annotations: Annotated[
        Path | None,
        typer.Option(
            "--coco-annotations", help="COCO instances JSON; DATA is then its images folder."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Where training runs: cpu, cuda, cuda:1.")
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Show a progress bar."),
    ] = None,
) -> None:
    """Fine-tune a model with simulated interactive prompts and save its weights.

    Writes OUT/metrics.jsonl, OUT/model_final.pt (loadable with `--checkpoint`) and
    OUT/trainer_state.pt (for --resume). An OUT that already holds a run is refused
    unless --resume continues it or --overwrite replaces it. Images without masks are
    skipped (a note says how many).
    """
    from samkit.build import build_model
    from samkit.cli.segment import parse_device
    from samkit.train.checkpoints import previous_run_files
    from samkit.train.trainer import Trainer

    cfg = _load_config(
        config,
        {
            "model": model,
            "init_checkpoint": str(init_checkpoint) if init_checkpoint is not None else None,
            "pretrained": pretrained,
            "out_dir": str(out) if out is not None else None,
            "max_steps": max_steps,
            "lr": lr,
            "log_every": log_every,
            "batch_size": batch_size,
            "masks_per_image": masks_per_image,
            "num_rounds": rounds,
            "freeze_image_encoder": freeze_encoder,
            "freeze": tuple(freeze) if freeze else None,
            "bf16": bf16,
            "device": device,
            "progress": progress,
        },
    )
    samkit.get_preset(cfg.model)  # UnknownModel before any data is read
    parse_device(cfg.device)
    if cfg.init_checkpoint and not Path(cfg.init_checkpoint).is_file():
        raise CheckpointError(f"--init-checkpoint file not found: {cfg.init_checkpoint}")
    out_dir = Path(cfg.out_dir)
    _check_run_folder(out_dir, cfg.init_checkpoint, resume, overwrite)
    if resume is not None and not resume.is_file():
        raise CheckpointError(f"--resume file not found: {resume}")
    dataset = open_dataset(data, coco_annotations)

    # A resumed run gets its weights from the state file: skip downloading the published ones.
    initial = build_model(cfg.model) if resume is not None and not cfg.init_checkpoint else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default", UserWarning)
            trainer = Trainer(cfg, model=initial, train_data=dataset)
    except SamkitError:
        raise
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc
    for warning in caught:  # images without masks, layer_decay on TinyViT, ...
        if issubclass(warning.category, UserWarning):
            typer.echo(f"note: {warning.message}", err=True)
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if resume is not None:
        try:
            trainer.resume(resume)
        except SamkitError:
            raise
        except Exception as exc:  # not foreseen by the checks of load_trainer_state
            raise CheckpointError(f"cannot resume from {resume}: {one_line(exc)}") from exc
        if trainer.step >= cfg.max_steps:
            typer.echo(
                f"note: {resume} is already at step {trainer.step} >= max_steps "
                f"{cfg.max_steps}; saving it as the final model",
                err=True,
            )
    if overwrite and previous_run_files(out_dir):
        typer.echo(f"note: --overwrite: replacing the run in {out_dir}", err=True)
    try:
        records = trainer.fit(overwrite=overwrite)
    except SamkitError:
        raise
    except (ValueError, OSError) as exc:  # unreadable image / JSON met during training
        raise CliError(f"training failed at step {trainer.step + 1}: {exc}") from exc

    used = len(trainer.sample_indices)
    typer.echo(f"trained {cfg.model} for {trainer.step} steps on {used} images")
    typer.echo(f"final checkpoint: {out_dir / 'model_final.pt'}")
    if records:  # this run wrote metrics (not with --log-every 0)
        typer.echo(f"metrics: {out_dir / 'metrics.jsonl'}")
    typer.echo(f"trainer state: {out_dir / 'trainer_state.pt'}")
