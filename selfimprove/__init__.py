"""selfimprove: an iterative, Prefect-orchestrated self-improvement pipeline for language models."""
