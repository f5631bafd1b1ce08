"""Lambda entry point of the LLM gateway (API Gateway -> Mangum -> FastAPI)."""

from functions.gateway.app import app
from functions.lambda_runtime import http_handler

handler = http_handler(app, "gateway")
