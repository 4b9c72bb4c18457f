"""Run the transformers Trainer on the peft model: grouped batches, progress lines, checkpoints
every save_steps, automatic resume from the newest checkpoint in the output directory."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from .batching import LengthBucketSampler, PadToLongest, TokenizedDataset
from .checkpoints import latest_checkpoint
from .config import TuningConfig

log = logging.getLogger(__name__)

# Our defaults where KAITO's config leaves a TrainingArguments key unset.
TRAINING_DEFAULTS = {
    "report_to": "none",
    "include_num_input_tokens_seen": "non_padding",
    "train_sampling_strategy": "group_by_length",
    "disable_tqdm": True,  # the progress lines below replace tqdm's carriage-return bars in Job logs
    "dataloader_num_workers": 0,
}


def training_arguments(cfg: TuningConfig, output_dir: Path, *, max_steps: int | None = None,
                       overrides: dict | None = None) -> TrainingArguments:
    import torch
    defaults = {**TRAINING_DEFAULTS, "dataloader_pin_memory": torch.cuda.is_available()}
    kwargs = {**defaults, **cfg.training, **(overrides or {}), "output_dir": str(output_dir)}
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    return TrainingArguments(**kwargs)


def _hms(seconds: float) -> str:
    return str(timedelta(seconds=int(max(seconds, 0))))


class ProgressCallback(TrainerCallback):
    """One line per log event: step, loss, tokens/s, elapsed and ETA (from this run's own pace)."""

    def __init__(self, every: int | None):
        self.every = every  # force a log every N steps when the config does not set logging_steps
        self.started = 0.0
        self.start_step = 0
        self.start_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()
        self.start_step = state.global_step
        self.start_tokens = state.num_input_tokens_seen
        if self.every is None:
            self.every = max(1, min(10, state.max_steps // 20))

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.monotonic() - self.started
        done = state.global_step - self.start_step
        tokens = state.num_input_tokens_seen - self.start_tokens
        tps = tokens / elapsed if elapsed > 0 else 0.0
        eta = elapsed / done * (state.max_steps - state.global_step) if done else 0.0
        if "loss" in logs:
            log.info("step %d/%d (%d%%) loss %.4f lr %.2e tokens/s %.0f elapsed %s eta %s",
                     state.global_step, state.max_steps, 100 * state.global_step // max(state.max_steps, 1),
                     logs["loss"], logs.get("learning_rate", 0.0), tps, _hms(elapsed), _hms(eta))
        elif "eval_loss" in logs:
            log.info("step %d/%d eval loss %.4f", state.global_step, state.max_steps, logs["eval_loss"])

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            log.info("checkpoint saved at step %d: %s", state.global_step,
                     Path(args.output_dir) / f"checkpoint-{state.global_step}")


class TuningTrainer(Trainer):
    """Trainer whose `group_by_length` sampling buckets by the lengths we already know (batching.py)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and isinstance(dataset, TokenizedDataset):
            return LengthBucketSampler(dataset.lengths, self.args.train_batch_size, seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)


@dataclass
class TrainResult:
    steps: int
    train_loss: float | None
    eval_loss: float | None
    loss_history: list[tuple[int, float]]
    tokens: int  # non-padding tokens processed in this run (not counting a resumed run's earlier part)
    duration_seconds: float
    resumed_from: str | None
    is_main_process: bool

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.duration_seconds if self.duration_seconds > 0 else 0.0


def train(model, tokenizer, cfg: TuningConfig, train_set: TokenizedDataset, eval_set: TokenizedDataset | None,
          output_dir: Path, *, max_steps: int | None = None, overrides: dict | None = None,
          resume: bool = True, callbacks: list | None = None) -> TrainResult:
    args = training_arguments(cfg, output_dir, max_steps=max_steps, overrides=overrides)
    collator = PadToLongest(tokenizer.pad_token_id, cfg.collator.pad_to_multiple_of)
    user_set_logging = "logging_steps" in cfg.training or "logging_steps" in (overrides or {})
    trainer = TuningTrainer(
        model=model, args=args, train_dataset=train_set, eval_dataset=eval_set or None, data_collator=collator,
        callbacks=[ProgressCallback(None if not user_set_logging else 0), *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts; ProgressCallback prints lines
    found = latest_checkpoint(output_dir) if resume else None
    checkpoint = str(found[0]) if found else None
    start_tokens = int(found[1].get("num_input_tokens_seen") or 0) if found else 0
    if found:
        log.info("resuming from checkpoint %s (step %d)", found[0].name, int(found[1].get("global_step", 0)))
    output = trainer.train(resume_from_checkpoint=checkpoint)
    duration = float(output.metrics.get("train_runtime") or 0.0)
    history = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
    eval_loss = None
    if eval_set:
        eval_loss = float(trainer.evaluate()["eval_loss"])
        log.info("final eval loss %.4f on %d examples", eval_loss, len(eval_set))
    trainer.save_model(str(output_dir))
    return TrainResult(
        steps=trainer.state.global_step,
        train_loss=history[-1][1] if history else output.training_loss,
        eval_loss=eval_loss,
        loss_history=history,
        tokens=int(trainer.state.num_input_tokens_seen) - start_tokens,
        duration_seconds=duration,
        resumed_from=Path(checkpoint).name if checkpoint else None,
        is_main_process=trainer.is_world_process_zero(),
    )
