# CPU image mirroring the README setup: the same scripts/setup.sh, the CLI as entrypoint.
# Not built in this project's CI (no Docker engine there); the GPU image (CUDA base + PyPI `vllm`)
# is tracked separately.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN ./scripts/setup.sh
ENV PATH="/app/.venv/bin:$PATH"
ENTRYPOINT ["selfimprove"]
CMD ["demo"]
