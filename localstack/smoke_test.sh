#!/usr/bin/env bash
# Smoke test of the deployed stack through its API: the gateway, then start -> poll -> review.
#
#   localstack/smoke_test.sh                                          # the stack on LocalStack
#   API_URL=https://abc.execute-api.eu-west-1.amazonaws.com localstack/smoke_test.sh   # on AWS
#   REPO_URL=https://github.com/owner/repo FUNCTION=pkg.mod.func localstack/smoke_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${API_URL:-}" ]; then
    # shellcheck source=localstack/env.sh
    . localstack/env.sh
    API_URL=$(api_url)
fi
REPO_URL=${REPO_URL:-https://github.com/pypa/sampleproject}
FUNCTION=${FUNCTION:-sample.simple.add_one}
WAIT_SECONDS=${WAIT_SECONDS:-300}
POLL_SECONDS=${POLL_SECONDS:-3}

# json FIELD: read a field of the JSON document on stdin.
json() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

echo "== $API_URL"
echo "-- GET /v1/models (gateway)"
curl -fsS "$API_URL/v1/models"
echo
echo "-- POST /analyze (gateway)"
curl -fsS "$API_URL/analyze" -H 'content-type: application/json' \
    -d '{"function_code": "def add(a, b): return a + b"}'
echo

echo "-- POST /analyze/start $REPO_URL"
JOB_ID=$(curl -fsS "$API_URL/analyze/start" -H 'content-type: application/json' \
    -d "{\"repo_url\": \"$REPO_URL\"}" | json job_id)
echo "job $JOB_ID"

deadline=$((SECONDS + WAIT_SECONDS))
while :; do
    STATUS=$(curl -fsS "$API_URL/analyze/jobs/$JOB_ID" | json status)
    echo "   status $STATUS"
    case $STATUS in
        READY) break ;;
        FAILED)
            curl -fsS "$API_URL/analyze/jobs/$JOB_ID"
            echo
            exit 1
            ;;
    esac
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "job $JOB_ID is still $STATUS after $WAIT_SECONDS s" >&2
        exit 1
    fi
    sleep "$POLL_SECONDS"
done

echo "-- POST /analyze/function $FUNCTION"
# -f is left out so that an error body (a stable code and a message) is shown.
RESPONSE=$(curl -sS -w '\n%{http_code}' "$API_URL/analyze/function" \
    -H 'content-type: application/json' \
    -d "{\"job_id\": \"$JOB_ID\", \"function_name\": \"$FUNCTION\"}")
CODE=${RESPONSE##*$'\n'}
echo "${RESPONSE%$'\n'*}"
if [ "$CODE" != 200 ]; then
    echo "POST /analyze/function answered $CODE" >&2
    exit 1
fi
echo "== smoke test passed"
