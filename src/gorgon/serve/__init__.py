"""Serving: the OpenAI API, a WebSocket stream of speculative trees, Prometheus metrics, a live page."""
