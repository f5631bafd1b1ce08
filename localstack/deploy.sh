#!/usr/bin/env bash
# Build template.yaml and deploy it to the LocalStack of localstack/docker-compose.yml.
#
#   localstack/deploy.sh                        # LLM_PROVIDER=local: the Ollama container
#   LLM_PROVIDER=offline localstack/deploy.sh   # the built-in reviewer, no model needed
#
# Needs: Docker (the worker is a container image), the SAM CLI, python3, make, and LocalStack
# running with a valid LOCALSTACK_AUTH_TOKEN.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=localstack/env.sh
. localstack/env.sh

LLM_PROVIDER=${LLM_PROVIDER:-local}
LOCAL_LLM_MODEL=${LOCAL_LLM_MODEL:-qwen2.5-coder:0.5b}

if ! curl -fsS "$LOCALSTACK_ENDPOINT/_localstack/health" >/dev/null; then
    echo "LocalStack does not answer at $LOCALSTACK_ENDPOINT." >&2
    echo "Start it: docker compose -f localstack/docker-compose.yml up -d --build --wait" >&2
    exit 1
fi

sam build

deploy() {
    sam deploy \
        --stack-name "$STACK_NAME" \
        --resolve-s3 \
        --resolve-image-repos \
        --capabilities CAPABILITY_IAM \
        --no-confirm-changeset \
        --no-fail-on-empty-changeset \
        --parameter-overrides \
        "LlmProvider=$LLM_PROVIDER" \
        "LocalLlmBaseUrl=http://ollama:11434/v1" \
        "LocalLlmModel=$LOCAL_LLM_MODEL" \
        "$@"
}

echo "== deploying $STACK_NAME to $LOCALSTACK_ENDPOINT"
deploy
# The template points the analysis service at its own API's AWS URL, which LocalStack's Lambda
# containers cannot resolve; now that the API id is known, point it at LocalStack's URL instead.
GATEWAY_URL="$(api_url)/v1"
echo "== pointing the analysis service at the gateway: $GATEWAY_URL"
deploy "LlmGatewayUrl=$GATEWAY_URL"

echo
echo "API: $(api_url)"
echo "Try it: localstack/smoke_test.sh"
