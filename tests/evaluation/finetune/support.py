"""A tiny model built in the test (random weights, a tokenizer trained on the fixture text) and
reviewed turns to export, for the fine-tuning tests."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User

from chatbot.llm.prompts import DEFAULT_SYSTEM_PROMPT
from chatbot.models import Export
from tests.evaluation.exports.support import rated, review, run_export
from tests.evaluation.judging import finished_turn

QA = [
    ("How do I reset a forgotten password?", "Click Forgot password on the sign-in page."),
    ("Who approves leave?", "Your line manager approves leave."),
    ("Where is the VPN guide?", "In the IT handbook, section four."),
    ("How long does a reset link last?", "A reset link expires after thirty minutes."),
    ("Can I work from abroad?", "Ask HR first; some countries need a permit."),
    ("How do I order a laptop?", "Open a ticket in the hardware portal."),
]
WRONG = "I do not know."


def tiny_model(folder: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    text = [DEFAULT_SYSTEM_PROMPT, WRONG, *(part for pair in QA for part in pair)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.save_pretrained(str(folder))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def sft_export(agent: User, reviewer: User) -> Export:
    """Approved and corrected answers: one supervised row each."""
    for question, answer in QA[:4]:
        review(finished_turn(agent, question=question, answer=answer), reviewer, approved=True)
    for question, answer in QA[4:]:
        turn = finished_turn(agent, question=question, answer=WRONG)
        review(turn, reviewer, grade=1, corrected=answer)
    export, _ = run_export(Export.Kind.SFT)
    return export


def dpo_export(agent: User, reviewer: User) -> Export:
    """Corrections (corrected vs original) and thumbs: preference pairs."""
    for question, answer in QA:
        turn = finished_turn(agent, question=question, answer=WRONG)
        review(turn, reviewer, grade=1, corrected=answer)
    rated(agent, 1, question=QA[0][0], answer=QA[0][1])
    rated(agent, -1, question=QA[0][0], answer="Reboot the printer.")
    export, _ = run_export(Export.Kind.DPO)
    return export
