"""Fine-tuning: train a model from a training export on a backend (local PEFT/TRL, or a hosted
OpenAI-compatible fine-tuning API), register it in the catalogue with its lineage, and promote it
to the default through gates (an offline experiment, then an online A/B test)."""
