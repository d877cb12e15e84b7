"""agentic-rl-scaling: scaling-law experiments for RL fine-tuning of reasoning LLMs.

Importing ``core`` is cheap: it does not import torch, ray, transformers, verl or vllm.
Those are imported inside backends and plugin factories, when a trial actually runs.
"""
__version__ = "0.1.0"
