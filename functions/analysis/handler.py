"""Lambda entry point of the analysis service (API Gateway -> Mangum -> FastAPI)."""

from functions.analysis.app import app
from functions.lambda_runtime import http_handler

handler = http_handler(app, "analysis")
