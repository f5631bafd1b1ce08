"""template.yaml against the code it deploys: names, handlers, routes, time budgets, tables.

``sam validate --lint`` (the ``sam`` nox session) checks that the template is valid
CloudFormation; these tests check that it is right for this code: every environment variable is
one the settings read, each function's environment builds the container its handler builds, the
API routes every endpoint to the right function, and the time budgets fit API Gateway's limit.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type information

from functions.adapters.aws import TTL_ATTRIBUTE
from functions.core.bootstrap import build_analysis_container, build_gateway_container
from functions.core.jobs import QUEUE_TIMEOUT, FetchContext
from functions.core.settings import Settings
from tests.support.apigw import ROUTES, route_of
from tests.support.aws import use_dummy_credentials
from tests.support.services import clean_env

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    """Load ``scripts/<name>.py`` (the scripts folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lambda_requirements = _script("lambda_requirements")

HANDLERS = {
    "GatewayFunction": "functions.gateway.handler.handler",
    "AnalysisFunction": "functions.analysis.handler.handler",
    "FetchRepoFunction": "functions.fetch_repo.handler.handler",
}
"""The Lambda handlers DESIGN.md fixes, by the template's logical ids."""

API_GATEWAY_LIMIT_SECONDS = 29
GATEWAY_CLIENT_MARGIN_SECONDS = 3.0
"""The analysis side gives the gateway LLM_TIMEOUT_SECONDS plus this (bootstrap.py)."""

PSEUDO = {
    "AWS::StackName": "codereview",
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML with CloudFormation's short tags (!Ref, !Sub, !GetAtt ...) as their long form."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """template.yaml, parsed."""
    with (ROOT / "template.yaml").open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - safe loader
    return loaded


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Lambda functions' properties, by logical id."""
    found = resources(template, "AWS::Serverless::Function")
    return {name: resource["Properties"] for name, resource in found.items()}


class Resolver:
    """Evaluates the intrinsic functions a function's environment uses, as a deploy would.

    Parameters take their defaults; a resource's Ref is a made-up physical name.
    """

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template

    def ref(self, name: str) -> str:
        if name == "AWS::NoValue":
            return name  # dropped by environment()
        if name in PSEUDO:
            return PSEUDO[name]
        parameter = self.template["Parameters"].get(name)
        if parameter is not None:
            return str(parameter.get("Default", ""))
        assert name in self.template["Resources"], f"!Ref {name}: no such parameter or resource"
        return f"codereview-{name}-0123ABCD"

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def value(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        [(function, argument)] = node.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            resource, attribute = argument
            assert resource in self.template["Resources"]
            return f"arn:aws:fake:{resource}:{attribute}"
        if function == "Fn::Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1)), argument)
        if function == "Fn::If":
            name, then, otherwise = argument
            return self.value(then if self.condition(name) else otherwise)
        if function == "Fn::Equals":
            left, right = (self.value(a) for a in argument)
            return left == right
        if function == "Fn::Not":
            return not self.value(argument[0])
        raise AssertionError(f"unexpected intrinsic {function}")

    def _sub(self, name: str) -> str:
        if "." in name and name not in PSEUDO:
            return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
        return self.ref(name)

    def environment(self, function: str) -> dict[str, str]:
        """The environment Lambda gives ``function``: Globals, then its own variables."""
        variables = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        own = functions(self.template)[function].get("Environment", {}).get("Variables", {})
        variables.update(own)
        resolved = {name: self.value(value) for name, value in variables.items()}
        return {k: str(v) for k, v in resolved.items() if v != "AWS::NoValue"}


@pytest.fixture
def resolver(template: dict[str, Any]) -> Resolver:
    """Evaluates the template's intrinsic functions with default parameters."""
    return Resolver(template)


@pytest.fixture
def lambda_settings(monkeypatch: pytest.MonkeyPatch, resolver: Resolver) -> Any:
    """Settings as a function of the stack reads them: from exactly its environment."""

    def settings_of(function: str) -> Settings:
        for name in set(os.environ) - set(clean_env({})):
            monkeypatch.delenv(name, raising=False)
        use_dummy_credentials(monkeypatch)
        for name, value in resolver.environment(function).items():
            monkeypatch.setenv(name, value)
        return Settings()

    return settings_of


def _setting_names() -> set[str]:
    names = set()
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(str(alias) if isinstance(alias, str) else name.upper())
    return names


# --- names --------------------------------------------------------------------------------------


def test_every_environment_variable_is_one_the_settings_read(
    template: dict[str, Any], resolver: Resolver
) -> None:
    known = _setting_names()
    for function in functions(template):
        names = set(resolver.environment(function))
        unknown = {n for n in names - known if not n.startswith("POWERTOOLS_")}
        assert unknown == set(), f"{function} sets variables no setting reads: {unknown}"


@pytest.mark.parametrize("function", sorted(HANDLERS))
def test_each_function_names_its_contract_handler_and_it_is_callable(
    template: dict[str, Any], function: str
) -> None:
    properties = functions(template)[function]
    if properties.get("PackageType") == "Image":
        assert properties["ImageConfig"]["Command"] == [HANDLERS[function]]
    else:
        assert properties["Handler"] == HANDLERS[function]
        assert properties["Runtime"] == f"python{lambda_requirements.LAMBDA_PYTHON}"
    module, _, attribute = HANDLERS[function].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_the_worker_may_start_itself_under_the_name_it_is_given(
    template: dict[str, Any], resolver: Resolver
) -> None:
    # Review batches are chained by async invokes of the worker itself.
    worker = functions(template)["FetchRepoFunction"]
    name = resolver.value(worker["FunctionName"])
    assert resolver.environment("FetchRepoFunction")["FETCH_FUNCTION_NAME"] == name
    invokable = [
        resolver.value(statement["Resource"])
        for statement in worker["Policies"][0]["Statement"]
        if statement["Action"] == "lambda:InvokeFunction"
    ]
    assert invokable == [f"arn:aws:lambda:us-east-1:123456789012:function:{name}"]


# --- each function's environment builds what its handler builds ------------------------------


@pytest.mark.parametrize("function", ["AnalysisFunction", "FetchRepoFunction"])
def test_analysis_and_worker_environments_build_the_aws_container(
    lambda_settings: Any, function: str
) -> None:
    settings = lambda_settings(function)

    container = build_analysis_container(settings)
    try:
        assert type(container.jobs).__name__ == "DynamoJobStore"
        assert type(container.blobs).__name__ == "S3BlobStore"
        assert type(container.dispatcher).__name__ == "LambdaDispatcher"
        # What the fetch handler builds on every event:
        context = container.review_context(remaining_seconds=lambda: 900.0).fetch
        assert isinstance(context, FetchContext)
        assert settings.llm_gateway_url.endswith(".execute-api.us-east-1.amazonaws.com/v1")
    finally:
        asyncio.run(container.aclose())


def test_gateway_environment_builds_the_gateway_with_its_dynamodb_cache(
    lambda_settings: Any,
) -> None:
    settings = lambda_settings("GatewayFunction")

    container = build_gateway_container(settings)
    try:
        assert type(container.reviewer.cache).__name__ == "DynamoReviewCache"
        assert settings.llm_provider.value == "offline"  # no key needed by default
        assert settings.openai_api_key is None
    finally:
        asyncio.run(container.aclose())


def test_api_keys_come_from_secrets_manager_references(
    template: dict[str, Any], resolver: Resolver
) -> None:
    resolver.template = {
        **template,
        "Parameters": {
            **template["Parameters"],
            "OpenAIApiKeySecretName": {"Default": "codereview/openai"},
        },
    }
    environment = resolver.environment("GatewayFunction")
    assert environment["OPENAI_API_KEY"] == "{{resolve:secretsmanager:codereview/openai}}"
    assert "DEEPSEEK_API_KEY" not in environment
    for function in ("AnalysisFunction", "FetchRepoFunction"):
        assert not {"OPENAI_API_KEY", "DEEPSEEK_API_KEY"} & set(resolver.environment(function))


# --- time budgets ------------------------------------------------------------------------------


def test_function_review_fits_under_api_gateways_limit(
    template: dict[str, Any], lambda_settings: Any
) -> None:
    analysis = lambda_settings("AnalysisFunction")
    timeout = functions(template)["AnalysisFunction"]["Timeout"]

    # Waiting for a fetching job, then the review through the gateway, then answering:
    worst = (
        analysis.function_wait_seconds
        + analysis.llm_timeout_seconds
        + GATEWAY_CLIENT_MARGIN_SECONDS
    )
    assert worst + 1 <= timeout <= API_GATEWAY_LIMIT_SECONDS
    for integration in resources(template, "AWS::ApiGatewayV2::Integration").values():
        assert integration["Properties"]["TimeoutInMillis"] <= API_GATEWAY_LIMIT_SECONDS * 1000


def test_gateway_answers_before_lambda_stops_it(
    template: dict[str, Any], lambda_settings: Any
) -> None:
    gateway = lambda_settings("GatewayFunction")
    timeout = functions(template)["GatewayFunction"]["Timeout"]

    assert gateway.llm_timeout_seconds + 5 <= timeout <= API_GATEWAY_LIMIT_SECONDS


def test_worker_time_and_async_invoke_settings(
    template: dict[str, Any], lambda_settings: Any
) -> None:
    worker = functions(template)["FetchRepoFunction"]
    settings = lambda_settings("FetchRepoFunction")
    safety = FetchContext.__dataclass_fields__["safety_seconds"].default

    assert settings.fetch_timeout_seconds + safety < worker["Timeout"] <= 900
    # The deadline comes from the remaining time, and the lease outlives a heartbeat gap.
    assert settings.fetch_lease_seconds >= 30
    invoke = worker["EventInvokeConfig"]
    assert 1 <= invoke["MaximumRetryAttempts"] <= 2
    # An event older than this is dropped; by then the job reads as never_started anyway.
    assert invoke["MaximumEventAgeInSeconds"] <= QUEUE_TIMEOUT.total_seconds()
    assert invoke["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    # A 500 MB download needs more than Lambda's default 512 MB of /tmp.
    assert worker["EphemeralStorage"]["Size"] > settings.max_repo_mb * 2


# --- storage -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key"), [("JobsTable", "job_id"), ("ReviewCacheTable", "cache_key")]
)
def test_tables_match_the_adapters(template: dict[str, Any], table: str, key: str) -> None:
    properties = template["Resources"][table]["Properties"]

    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
    assert properties["AttributeDefinitions"] == [{"AttributeName": key, "AttributeType": "S"}]
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_fetched_sources_expire_with_their_jobs(template: dict[str, Any]) -> None:
    rules = template["Resources"]["ReposBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "ExpirationInDays" in r]

    assert {r["Prefix"] for r in expiring} == {"repos/", "reports/"}
    assert all(r["ExpirationInDays"] == {"Ref": "JobTtlDays"} for r in expiring)


# --- the HTTP API --------------------------------------------------------------------------------


def _routes(template: dict[str, Any]) -> dict[str, str]:
    integrations = {
        name: resource["Properties"]["IntegrationUri"]["Fn::GetAtt"][0]
        for name, resource in resources(template, "AWS::ApiGatewayV2::Integration").items()
    }
    routes = {}
    for resource in resources(template, "AWS::ApiGatewayV2::Route").values():
        target = resource["Properties"]["Target"]["Fn::Sub"]
        integration = re.fullmatch(r"integrations/\$\{(\w+)\}", target)
        assert integration is not None, target
        routes[resource["Properties"]["RouteKey"]] = integrations[integration.group(1)]
    return routes


def test_the_test_helpers_route_as_the_template_does(template: dict[str, Any]) -> None:
    assert _routes(template) == ROUTES


@pytest.mark.parametrize(
    ("function", "module"),
    [("AnalysisFunction", "functions.analysis.app"), ("GatewayFunction", "functions.gateway.app")],
)
def test_every_endpoint_reaches_its_function(
    template: dict[str, Any], function: str, module: str
) -> None:
    routes = _routes(template)
    app = importlib.import_module(module).app
    # Interactive docs stay local; one API has one /healthz, the analysis service's (the
    # gateway's health shows through GET /v1/models).
    unrouted = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    if function == "GatewayFunction":
        unrouted.add("/healthz")
    checked = 0
    for route in app.routes:
        if route.path in unrouted:
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in route.methods:
            key, _ = route_of(method, path)
            assert routes[key] == function, f"{method} {route.path} goes to {routes[key]}"
            checked += 1
    assert checked >= 3


def test_the_api_url_is_an_output(template: dict[str, Any], resolver: Resolver) -> None:
    outputs = template["Outputs"]
    assert resolver.value(outputs["ApiUrl"]["Value"]) == (
        "https://codereview-HttpApi-0123ABCD.execute-api.us-east-1.amazonaws.com"
    )
    assert resolver.value(outputs["GatewayOpenAIBaseUrl"]["Value"]).endswith("/v1")


# --- how the functions are built ---------------------------------------------------------------


def test_zip_functions_have_makefile_targets(template: dict[str, Any]) -> None:
    makefile = (ROOT / "functions" / "Makefile").read_text()
    for name, resource in resources(template, "AWS::Serverless::Function").items():
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile":
            assert functions(template)[name]["CodeUri"] == "functions/"
            assert re.search(rf"^(.*\s)?build-{name}(\s.*)?:", makefile, re.M), name


def test_worker_image_is_built_from_the_functions_folder(template: dict[str, Any]) -> None:
    metadata = template["Resources"]["FetchRepoFunction"]["Metadata"]
    context = ROOT / metadata["DockerContext"]
    dockerfile = (context / metadata["Dockerfile"]).read_text()

    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base is not None
    assert base.group(1) == f"public.ecr.aws/lambda/python:{lambda_requirements.LAMBDA_PYTHON}"
    assert re.search(r"^RUN dnf install -y git-core", dockerfile, re.M)
    for source in re.findall(r"^COPY (\S+) ", dockerfile, re.M):
        assert (context / source).exists(), f"COPY {source}: not in the build context"
    assert f'CMD ["{HANDLERS["FetchRepoFunction"]}"]' in dockerfile


def test_lambda_requirements_match_the_lock() -> None:
    expected = lambda_requirements.render((ROOT / "poetry.lock").read_text(encoding="utf-8"))
    current = (ROOT / "functions" / "requirements.txt").read_text(encoding="utf-8")

    assert current == expected, "run: python scripts/lambda_requirements.py"
    for needed in ("mangum==", "aws-lambda-powertools==", "boto3==", "ruff=="):
        assert needed in current
    for dev_only in ("pytest==", "moto==", "mypy=="):
        assert dev_only not in current
