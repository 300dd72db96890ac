"""Models the agent talks to: an OpenAI-compatible HTTP client (``client.OpenAIModel``)."""
