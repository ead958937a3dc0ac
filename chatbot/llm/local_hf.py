"""A Hugging Face model directory served in this process: merged weights, or a LoRA adapter on
its base model (what a local fine-tuning job writes, `evaluation.finetune`).

The model is a langchain-core chat model like every other provider, so a turn, an experiment or a
judge uses it through `chatbot.llm.stream` unchanged. `generate` runs in a worker thread and hands
its text over through transformers' `TextIteratorStreamer`, so tokens stream as they are made;
langchain-core runs the sync stream in an executor for async callers (daphne's loop never blocks).

Weights are loaded once per process and directory (the cache is keyed by the path and the time the
directory's files last changed, so a retrained model in the same folder is read again). Meant for
small models and GPU machines: on 2 CPU cores a 270M model makes tens of tokens a second.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from chatbot.llm.types import ModelError

ADAPTER_CONFIG = "adapter_config.json"
# Seconds the streamer waits for the next piece before calling the generation stuck.
STREAM_TIMEOUT_S = 120.0
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
# A byte-level tokenizer can decode to any byte: control characters (NUL above all, which
# Postgres refuses in text) are dropped; line breaks and tabs stay.
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in "\n\r\t")


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    lock: threading.Lock  # one generation at a time per model: CPU threads are shared anyway


_loaded: dict[tuple[str, float], Loaded] = {}
_loading = threading.Lock()


def _stamp(path: Path) -> float:
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=0.0)


def model_directory_problem(path: Path) -> str:
    """Why `path` is not a model directory this provider can serve, in words; "" when it is."""
    if not path.is_dir():
        return f"{path} is not a folder on this machine."
    if not ((path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()):
        return f"{path} holds no config.json (nor a LoRA adapter_config.json)."
    return ""


def load(path_text: str) -> Loaded:
    """The model and tokenizer of a directory, loaded once per process (and per change)."""
    path = Path(path_text).expanduser().resolve()
    problem = model_directory_problem(path)
    if problem:
        raise ModelError("The local model's folder is missing or incomplete.", detail=problem)
    key = (str(path), _stamp(path))
    found = _loaded.get(key)
    if found is not None:
        return found
    with _loading:
        found = _loaded.get(key)
        if found is None:
            found = _loaded[key] = _load_uncached(path)
    return found


def _load_uncached(path: Path) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (path / ADAPTER_CONFIG).is_file():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(str(path))
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return Loaded(model=model, tokenizer=tokenizer, lock=threading.Lock())


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The model's own chat template when it has one; plain "role: text" lines otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


class LocalHFChatModel(BaseChatModel):
    """A chat model over a local directory, generating with transformers in a worker thread."""

    path: str
    max_new_tokens: int = 256
    temperature: float = 0.2

    @property
    def _llm_type(self) -> str:
        return "local-hf"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"path": self.path, "max_new_tokens": self.max_new_tokens}

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        loaded = load(self.path)
        tokenizer = loaded.tokenizer
        chat = [{"role": _ROLES.get(m.type, "user"), "content": str(m.content)} for m in messages]
        inputs = tokenizer(render_prompt(tokenizer, chat), return_tensors="pt")
        inputs.pop("token_type_ids", None)
        limit = min(int(kwargs.get("max_tokens") or self.max_new_tokens), self.max_new_tokens)
        temperature = float(kwargs.get("temperature", self.temperature))
        streamer = TextIteratorStreamer(
            tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=STREAM_TIMEOUT_S
        )
        # Tokens that would print as nothing (padding, unknown, start) are never chosen, and the
        # end token not as the first: an answer always has text.
        silent = {tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id}
        settings: dict[str, Any] = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": limit,
            "min_new_tokens": 1,
            "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
            "suppress_tokens": sorted(t for t in silent if t is not None) or None,
        }
        if temperature > 0:
            settings.update(do_sample=True, temperature=temperature)
        else:
            settings["do_sample"] = False
        produced: dict[str, Any] = {}

        def generate() -> None:
            try:
                with loaded.lock, torch.inference_mode():
                    output = loaded.model.generate(**settings)
                produced["tokens"] = int(output.shape[-1] - inputs["input_ids"].shape[-1])
            except Exception as exc:  # handed to the reading side, which raises it
                produced["error"] = exc
                streamer.end()

        worker = threading.Thread(target=generate, name="local-hf-generate", daemon=True)
        worker.start()
        text: list[str] = []
        for raw in streamer:
            piece = raw.translate(_CONTROL)
            if not piece:
                continue
            text.append(piece)
            if stop and any(s in "".join(text) for s in stop):
                break
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        worker.join()
        if "error" in produced:
            raise ModelError(
                "The local model failed to answer. Please try again or escalate.",
                detail=f"{type(produced['error']).__name__}: {produced['error']}",
            )
        prompt_tokens = int(inputs["input_ids"].shape[-1])
        output_tokens = int(produced.get("tokens", 0))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata={
                    "input_tokens": prompt_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": prompt_tokens + output_tokens,
                },
            )
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        pieces = list(self._stream(messages, stop, run_manager, **kwargs))
        text = "".join(str(p.message.content) for p in pieces)
        usage = pieces[-1].message.usage_metadata if pieces else None  # type: ignore[attr-defined]
        message = AIMessage(content=text, usage_metadata=usage)
        return ChatResult(generations=[ChatGeneration(message=message)])
