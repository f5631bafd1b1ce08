#!/usr/bin/env bash
# Healthy only once entrypoint.sh has seen the model answer, and while Ollama still serves it.
set -euo pipefail

model="${LOCAL_LLM_MODEL:-qwen2.5-coder:0.5b}"
ready_file="${CODEREVIEW_READY_FILE:-/tmp/codereview-model-ready}"

if [[ ! -f "$ready_file" ]]; then
    echo "$model is not ready yet (pulling or loading; see the container's log)" >&2
    exit 1
fi
ollama show "$model" >/dev/null
