"""Gorgon: speculative-decoding inference for Llama-family models."""

from gorgon.config import ModelConfig, SamplingParams, SpecConfig
from gorgon.engine import RequestOutput, TokenEvent
from gorgon.errors import GorgonError
from gorgon.llm import LLM

__all__ = ["LLM", "GorgonError", "ModelConfig", "RequestOutput", "SamplingParams", "SpecConfig", "TokenEvent"]
__version__ = "0.1.0"
