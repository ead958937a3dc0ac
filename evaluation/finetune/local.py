"""The local backend: LoRA with PEFT, trained by TRL (`SFTTrainer` or `DPOTrainer`) on a Hugging
Face model directory an admin points to. CPU for tiny models; a machine with a GPU for real ones
(the trainer uses it when torch sees one).

The result is written under FINETUNE_DIR, one folder per job: merged weights (the adapter folded
into the base, served like any model) or the adapter alone (small; served on its base). It is
written to a temporary folder first and moved into place, so a rerun never serves half a model.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from chatbot.llm.local_hf import model_directory_problem
from chatbot.models import FineTuneJob, ModelEndpoint
from evaluation.finetune.backends import BackendError, Cancelled, Reporter, Trained
from evaluation.finetune.data import Rows

# Used when the base model's tokenizer has none; the serving side renders the same shape
# (`chatbot.llm.local_hf.render_prompt`), and the end token after each answer teaches stopping.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
POINTS = 50  # about this many logged losses per run, whatever its length


def output_root() -> Path:
    return Path(settings.FINETUNE_DIR)


def output_path(job: FineTuneJob) -> Path:
    return output_root() / f"job-{job.pk:06d}"


def _callback(reporter: Reporter) -> Any:
    from transformers import TrainerCallback

    class Report(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            reporter.progress(0, state.max_steps)
            reporter.log(f"training: {state.max_steps} steps")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            reporter.progress(state.global_step, state.max_steps)
            if reporter.cancelled():
                control.should_training_stop = True

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            logs = logs or {}
            step = state.global_step
            if "loss" in logs:
                reporter.loss(step, train=logs["loss"])
                reporter.log(f"step {step}: training loss {logs['loss']:.4f}")
            if "eval_loss" in logs:
                reporter.loss(step, validation=logs["eval_loss"])
                reporter.log(f"step {step}: validation loss {logs['eval_loss']:.4f}")

    return Report()


class LocalBackend:
    def run(self, job: FineTuneJob, rows: Rows, reporter: Reporter) -> Trained:
        import datasets
        import torch
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback

        base = Path(job.base_model).expanduser()
        problem = model_directory_problem(base)
        if problem:
            raise BackendError(problem)
        hp = job.hyperparameters
        datasets.disable_progress_bars()
        torch.manual_seed(int(hp["seed"]))
        reporter.log(f"loading {base}")
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        model = AutoModelForCausalLM.from_pretrained(str(base))
        steps_per_epoch = math.ceil(len(rows.train) / int(hp["batch_size"]))
        total = int(hp["max_steps"]) or steps_per_epoch * int(hp["epochs"])
        every = max(1, total // POINTS)
        common: dict[str, Any] = {
            "output_dir": str(output_root() / f".job-{job.pk:06d}-checkpoints"),
            "num_train_epochs": float(hp["epochs"]),
            "max_steps": int(hp["max_steps"]) or -1,
            "per_device_train_batch_size": int(hp["batch_size"]),
            "per_device_eval_batch_size": int(hp["batch_size"]),
            "learning_rate": float(hp["learning_rate"]),
            "logging_steps": every,
            "eval_strategy": "steps" if rows.validation else "no",
            "eval_steps": every if rows.validation else None,
            "save_strategy": "no",
            "report_to": [],
            "disable_tqdm": True,
            "seed": int(hp["seed"]),
            "use_cpu": not torch.cuda.is_available(),
            "max_length": int(hp["max_length"]),
            "dataloader_num_workers": 0,
        }
        lora = LoraConfig(
            r=int(hp["lora_r"]),
            lora_alpha=int(hp["lora_alpha"]),
            lora_dropout=float(hp["lora_dropout"]),
            task_type="CAUSAL_LM",
        )
        train = datasets.Dataset.from_list(rows.train)
        validation = datasets.Dataset.from_list(rows.validation) if rows.validation else None
        reporter.log(
            f"{job.get_method_display()}: {len(rows.train)} training rows, "
            f"{len(rows.validation)} validation rows"
        )
        trainer: Any
        if job.method == FineTuneJob.Method.DPO:
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                args=DPOConfig(**common, beta=float(hp["beta"])),
                train_dataset=train,
                eval_dataset=validation,
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[_callback(reporter)],
            )
        else:
            from trl import SFTConfig, SFTTrainer

            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(**common),
                train_dataset=train,
                eval_dataset=validation,
                processing_class=tokenizer,
                peft_config=lora,
                callbacks=[_callback(reporter)],
            )
        trainer.remove_callback(PrinterCallback)  # the reporter logs; nothing goes to stdout
        trainer.train()
        if reporter.cancelled():
            raise Cancelled
        return self._save(job, trainer, tokenizer, reporter)

    def _save(self, job: FineTuneJob, trainer: Any, tokenizer: Any, reporter: Reporter) -> Trained:
        final = output_path(job)
        partial = final.with_name(final.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        merged = bool(job.hyperparameters.get("merge", True))
        if merged:
            model = trainer.model.merge_and_unload()
            model.save_pretrained(str(partial))
        else:
            trainer.model.save_pretrained(str(partial))
        tokenizer.save_pretrained(str(partial))
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        shutil.rmtree(trainer.args.output_dir, ignore_errors=True)
        reporter.log(f"saved {'merged weights' if merged else 'the LoRA adapter'} to {final}")
        return Trained(
            provider=ModelEndpoint.Provider.LOCAL_HF,
            model_id=str(final.resolve()),
            details={"weights": "merged" if merged else "adapter"},
        )
