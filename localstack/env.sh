# Sourced by deploy.sh and smoke_test.sh: where LocalStack is and what the stack is called.
# shellcheck shell=bash

STACK_NAME=${STACK_NAME:-codereview}
LOCALSTACK_ENDPOINT=${LOCALSTACK_ENDPOINT:-http://localhost.localstack.cloud:4566}
# LocalStack accepts any credentials; these keep the AWS CLI tools away from a real account.
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
# boto3 (so the SAM CLI) sends every AWS call here instead of to AWS.
export AWS_ENDPOINT_URL=$LOCALSTACK_ENDPOINT
export SAM_CLI_TELEMETRY=0

# stack_output NAME: one output of the deployed stack.
stack_output() {
    sam list stack-outputs --stack-name "$STACK_NAME" --output json |
        python3 -c 'import json, sys
name = sys.argv[1]
values = [o["OutputValue"] for o in json.load(sys.stdin) if o["OutputKey"] == name]
if not values:
    sys.exit(f"stack output {name} not found: is the stack deployed?")
print(values[0])' "$1"
}

# api_url: the HTTP API's URL on LocalStack (its AWS-style URL does not resolve here).
api_url() {
    echo "http://$(stack_output ApiId).execute-api.localhost.localstack.cloud:4566"
}
