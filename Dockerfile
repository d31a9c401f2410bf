# Two images from one file, both installed by scripts/setup.sh with the `selfimprove` CLI as entrypoint:
#   docker build --target cpu -t selfimprove:cpu .   (also plain `docker build .`: cpu is the last stage)
#   docker build --target gpu -t selfimprove:gpu .   then: docker run --gpus all selfimprove:gpu run cfg.yaml
# Extra setup flags, e.g. the browser tests' chromium: --build-arg SETUP_FLAGS=--browser
# NOT BUILT in this project's CI or dev machines (no Docker engine there). What was checked instead:
# scripts/setup.sh (no flag, --browser) ran on Debian 12 with Python 3.11; requirements-gpu.txt was
# resolved (metadata only, nothing installed) for linux x86_64 / Python 3.11: vllm 0.32.0 pins
# torch 2.13.0, whose PyPI wheels use CUDA 13, hence the CUDA 13 base (host driver R580 or newer).
# The base image tag itself was not pulled.

# ---- gpu: CUDA base + PyPI's vllm (CUDA); torch comes from vllm's pin ----
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04 AS gpu
ARG SETUP_FLAGS=""
ENV DEBIAN_FRONTEND=noninteractive
# Ubuntu 22.04 ships Python 3.10; the stack is pinned and tested on 3.11 (deadsnakes PPA).
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc g++ git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN PYTHON=python3.11 ./scripts/setup.sh --gpu $SETUP_FLAGS
ENV PATH="/app/.venv/bin:$PATH"
ENTRYPOINT ["selfimprove"]
CMD ["demo"]

# ---- cpu: what README's setup does, in a slim Python image ----
FROM python:3.11-slim AS cpu
ARG SETUP_FLAGS=""
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN ./scripts/setup.sh $SETUP_FLAGS
ENV PATH="/app/.venv/bin:$PATH"
ENTRYPOINT ["selfimprove"]
CMD ["demo"]
