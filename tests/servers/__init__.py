"""Real loopback servers (127.0.0.1, port 0) that tests and benchmarks talk HTTP to."""
