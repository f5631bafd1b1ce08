#!/usr/bin/env bash
# Serve LOCAL_LLM_MODEL with Ollama, ready for the gateway's `local` provider:
#   1. start `ollama serve`;
#   2. pull the model unless the models volume has it (first start only);
#   3. re-create the tag from the Modelfile (context window, temperature, output bound);
#   4. ask it one short question, which loads it into memory and proves it answers;
#   5. write the ready file that healthcheck.sh requires.
# A failed pull stops the container with a message (restart policies retry); docker stop
# reaches Ollama at once, even in the middle of a pull.
set -euo pipefail

model="${LOCAL_LLM_MODEL:-qwen2.5-coder:0.5b}"
context="${LLM_CONTEXT_TOKENS:-}"
# Overridable so the tests can run this script with a stand-in `ollama` outside a container.
modelfile="${CODEREVIEW_MODELFILE:-/etc/codereview/Modelfile}"
ready_file="${CODEREVIEW_READY_FILE:-/tmp/codereview-model-ready}"

log() { printf '[local-llm] %s\n' "$*" >&2; }

prepare_model() {
    until ollama list >/dev/null 2>&1; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            log "ollama serve exited before it was ready; see its output above"
            return 1
        fi
        sleep 0.5
    done
    if ollama show "$model" >/dev/null 2>&1; then
        log "$model is already in the models volume"
    else
        log "pulling $model (first start only: it is kept in the models volume)"
        if ! ollama pull "$model"; then
            log "could not pull $model: check the tag (https://ollama.com/library) and the network"
            return 1
        fi
    fi
    local tuned
    tuned="$(mktemp)"
    sed -e "s|^FROM .*|FROM ${model}|" "$modelfile" >"$tuned"
    if [[ -n "$context" ]]; then
        sed -i -e "s|^PARAMETER num_ctx .*|PARAMETER num_ctx ${context}|" "$tuned"
    fi
    # Only a small manifest is written: the weights are shared with the pulled tag.
    ollama create "$model" -f "$tuned" >/dev/null
    log "$model created with: $(grep '^PARAMETER' "$tuned" | tr '\n' ' ')"
    rm -f "$tuned"
    ollama run "$model" "Reply with one word: ready" >/dev/null
    touch "$ready_file"
    log "$model answered; ready at :11434/v1 (OpenAI-compatible)"
}

stop() {
    trap - TERM INT
    kill -TERM ${setup_pid:+"$setup_pid"} "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    exit 143
}

rm -f "$ready_file"
ollama serve &
server_pid=$!
trap stop TERM INT

# In the background, so that a signal is handled at once (bash runs traps only between
# foreground commands, and a pull can take minutes).
prepare_model &
setup_pid=$!
if ! wait "$setup_pid"; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    exit 1
fi
wait "$server_pid"
