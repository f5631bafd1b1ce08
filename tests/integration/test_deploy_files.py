"""The deployment files, checked as far as a machine without a Docker engine allows.

docker-compose.yml, .env.example, docker/Dockerfile and local_llm/ are written for users with
Docker. Here they are read the way Docker reads them and replayed without it:

* every environment variable they name is a field of ``Settings`` (or someone else's, listed
  below with its owner), and the values they set are valid settings;
* compose wires the services together the way the Dockerfiles and the apps expect (ports,
  URLs, volumes, healthchecks, ``depends_on: service_healthy``);
* the service images install exactly the lock's main group, and each image's CMD, run as written
  (but on 127.0.0.1 and a free port) from that install and the files the image copies, serves,
  and its HEALTHCHECK command passes (and fails once the app is gone);
* the Ollama image's scripts do what the healthcheck relies on, with a stand-in ``ollama``.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import venv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from dev import PINS
from functions.core.settings import Settings
from tests.support.deploy import (
    Dockerfile,
    DockerIgnore,
    Instruction,
    Stage,
    cloudformation_environment_names,
    compose_variables,
    env_file_entries,
    interpolate,
    load_yaml,
    service_environment,
    strings_in,
)
from tests.support.services import REPO_ROOT, clean_env

COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SERVICES_DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
OLLAMA_DIR = REPO_ROOT / "local_llm"
OLLAMA_DOCKERFILE = OLLAMA_DIR / "Dockerfile"
MODELFILE = OLLAMA_DIR / "Modelfile"
TEMPLATE = REPO_ROOT / "template.yaml"
LOCALSTACK = REPO_ROOT / "localstack"

# Variables that are not ours to define, by owner. Anything else must be a Settings field.
FOREIGN_NAMES = {
    "PATH", "HOME", "VIRTUAL_ENV",  # the OS and the venv
    "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",  # the Python interpreter
    "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK",  # pip, in the builder stage
    "POETRY_NO_INTERACTION", "POETRY_VIRTUALENVS_CREATE",  # poetry, in the builder stage
}  # fmt: skip
FOREIGN_PREFIXES = (
    "OLLAMA_",  # Ollama's own configuration
    "AWS_",  # boto3's and the Lambda runtime's (AWS_ENDPOINT_URL, AWS_REGION ...)
    "POWERTOOLS_",  # aws-lambda-powertools
    "LOCALSTACK_",  # LocalStack's own configuration
)
# Compose-only knobs: interpolated into docker-compose.yml, never passed to a service.
COMPOSE_ONLY = {"ANALYSIS_HOST_PORT", "GATEWAY_HOST_PORT", "OLLAMA_HOST_PORT"}

# Where compose deliberately differs from the Settings defaults, and why.
COMPOSE_OVERRIDES = {
    "LLM_PROVIDER": "local",  # REST mode ships a model: no API key needed
    "LOCAL_LLM_BASE_URL": "http://ollama:11434/v1",  # the ollama service on compose's network
    "LLM_GATEWAY_URL": "http://gateway:8001/v1",  # the gateway service on compose's network
    "LLM_TIMEOUT_SECONDS": "60",  # CPU inference; no API Gateway 29 s limit in compose
    "DATA_DIR": "/data",  # the services' volume
}
OUR_SERVICES = ("ollama", "gateway", "analysis")


def setting_fields() -> dict[str, str]:
    """Each Settings field by the environment variable that sets it."""
    fields = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        fields[alias.upper() if isinstance(alias, str) else name.upper()] = name
    return fields


def setting_names() -> set[str]:
    """The environment variable of every Settings field."""
    return set(setting_fields())


def default(field: str) -> Any:
    """A Settings field's default (what runs when nothing is configured)."""
    return Settings.model_fields[field].get_default(call_default_factory=True)


def is_known(name: str) -> bool:
    """Whether ``name`` is a setting or another program's variable."""
    return (
        name in setting_names()
        or name in FOREIGN_NAMES
        or name.startswith(FOREIGN_PREFIXES)
        or name in COMPOSE_ONLY
    )


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly ``env`` (and none of ours from the shell) reads them."""
    for key in os.environ:
        if key.upper() in setting_names():
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One compose service."""
    found = compose["services"][name]
    assert isinstance(found, dict)
    return found


def service_dockerfile(compose: Mapping[str, Any], name: str) -> tuple[Dockerfile, Stage]:
    """The Dockerfile and the stage a compose service builds."""
    build = service(compose, name)["build"]
    context = REPO_ROOT / build["context"]
    dockerfile = Dockerfile.read(context / build.get("dockerfile", "Dockerfile"))
    target = build.get("target")
    stage = dockerfile.stage(target) if target else dockerfile.stages[-1]
    return dockerfile, stage


def dockerfile_instruction(compose: Mapping[str, Any], name: str, keyword: str) -> Instruction:
    """The instruction with ``keyword`` that applies to the image a compose service builds."""
    dockerfile, stage = service_dockerfile(compose, name)
    return dockerfile.require(stage, keyword)


def _cmd_port(command: list[str]) -> int:
    return int(command[command.index("--port") + 1])


# --- environment variables -----------------------------------------------------------------


def _files_naming_variables() -> list[Path]:
    files = [COMPOSE, ENV_EXAMPLE, SERVICES_DOCKERFILE, OLLAMA_DOCKERFILE]
    # Other engineers' deployment files, when they exist: read, never written, here.
    if TEMPLATE.exists():
        files.append(TEMPLATE)
    if LOCALSTACK.is_dir():
        files += sorted(p for p in LOCALSTACK.rglob("*") if p.suffix in (".yml", ".yaml", ".env"))
    files += sorted((REPO_ROOT / "functions").rglob("Dockerfile"))  # Lambda container images
    return files


def variables_named_in(path: Path) -> set[str]:
    """The environment variables a deployment file sets or interpolates for our processes."""
    if path.name == "Dockerfile":
        dockerfile = Dockerfile.read(path)
        return {key for stage in dockerfile.stages for key in dockerfile.env(stage)}
    if path.suffix == ".env" or path.name.startswith(".env"):
        return set(env_file_entries(path))
    data = load_yaml(path)
    names = cloudformation_environment_names(data)
    for name, svc in (data.get("services") or {}).items() if isinstance(data, dict) else ():
        # Third-party images (LocalStack, say) have their own variables; ours are built here
        # or named codereview-*.
        if "build" in svc or str(svc.get("image", "")).startswith("codereview"):
            names |= set(service_environment(svc))
            for text in strings_in(svc):
                names |= set(compose_variables(text))
        else:
            assert name not in OUR_SERVICES, f"{path}: service {name} must be built here"
    return names


@pytest.mark.parametrize(
    "path", _files_naming_variables(), ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_every_variable_a_deployment_file_names_is_a_setting(path: Path) -> None:
    names = variables_named_in(path)

    unknown = sorted(name for name in names if not is_known(name))

    if path in (COMPOSE, ENV_EXAMPLE, SERVICES_DOCKERFILE, OLLAMA_DOCKERFILE):
        assert names, f"{path} names no variables: is it parsed right?"
    assert not unknown, (
        f"{path.relative_to(REPO_ROOT)} names {unknown}, which no Settings field reads "
        "(functions/core/settings.py): a typo, or a setting that is missing there"
    )


def _plain(value: object) -> object:
    """A setting's value, an empty secret counting as unset (as the providers treat it)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value


@pytest.mark.parametrize("name", ["gateway", "analysis"])
def test_compose_service_environment_is_valid_settings(
    compose: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given compose's defaults (an empty .env), when the service reads its settings ...
    env = {k: interpolate(v, {}) for k, v in service_environment(service(compose, name)).items()}

    settings = settings_from(env, monkeypatch)  # ... then they validate

    defaults = settings_from({}, monkeypatch)
    for key in env:
        field = setting_fields().get(key)
        assert field is not None, f"{key} is not a setting"
        if key in COMPOSE_OVERRIDES:
            assert env[key] == COMPOSE_OVERRIDES[key], key
        else:
            # Drift check: compose repeats a default only to document it; it must not differ.
            assert _plain(getattr(settings, field)) == _plain(getattr(defaults, field)), (
                f"compose's default for {key} ({env[key]!r}) differs from Settings'; "
                "change one of them, or list it in COMPOSE_OVERRIDES with the reason"
            )


def test_env_example_documents_every_compose_variable_with_its_default(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = env_file_entries(ENV_EXAMPLE)
    interpolated: dict[str, str | None] = {}
    for text in strings_in(compose["services"]):
        interpolated.update(compose_variables(text))

    assert set(example) == set(interpolated), (
        ".env.example and docker-compose.yml must name the same variables: "
        f"only in .env.example {sorted(set(example) - set(interpolated))}, "
        f"only in compose {sorted(set(interpolated) - set(example))}"
    )
    for key, value in example.items():
        assert value == (interpolated[key] or ""), f".env.example shows {key}={value}"
    # Copying .env.example to .env unchanged gives valid settings.
    settings_from({k: v for k, v in example.items() if k not in COMPOSE_ONLY}, monkeypatch)


def test_an_invalid_value_in_env_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # The check above is only worth something if a bad .env value would be caught.
    with pytest.raises(ValidationError, match="llm_provider"):
        settings_from({"LLM_PROVIDER": "ollama"}, monkeypatch)


# --- compose wiring --------------------------------------------------------------------------


def test_compose_starts_each_service_after_its_dependency_is_healthy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]

    assert set(OUR_SERVICES) <= set(services)
    assert services["gateway"]["depends_on"] == {"ollama": {"condition": "service_healthy"}}
    assert services["analysis"]["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    for name in OUR_SERVICES:
        healthcheck = services[name]["healthcheck"]
        assert healthcheck["test"][0] == "CMD", name
        assert healthcheck["retries"] >= 1, name
        assert services[name]["restart"] == "unless-stopped", name


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_compose_healthchecks_and_ports_match_the_images(
    compose: dict[str, Any], name: str
) -> None:
    svc = service(compose, name)
    dockerfile, stage = service_dockerfile(compose, name)
    healthcheck = dockerfile.require(stage, "HEALTHCHECK")
    expose = dockerfile.require(stage, "EXPOSE")

    # The same check as the image's own (docker run users get it too), not a drifted copy.
    assert svc["healthcheck"]["test"] == ["CMD", *healthcheck.exec_form()]
    [published] = svc["ports"]
    host_ip, host_port, container_port = interpolate(published, {}).split(":")
    # No authentication on these services: reachable from this machine only.
    assert host_ip == "127.0.0.1"
    assert container_port == expose.args
    assert host_port == container_port  # the documented ports are the real ones by default


def test_compose_urls_name_the_services_and_their_ports(compose: dict[str, Any]) -> None:
    gateway_env = service_environment(service(compose, "gateway"))
    analysis_env = service_environment(service(compose, "analysis"))
    gateway_cmd = dockerfile_instruction(compose, "gateway", "CMD").exec_form()
    ollama_port = dockerfile_instruction(compose, "ollama", "EXPOSE").args

    local = urlsplit(gateway_env["LOCAL_LLM_BASE_URL"])
    assert (local.hostname, local.path) == ("ollama", "/v1")
    assert str(local.port) == ollama_port
    gateway = urlsplit(analysis_env["LLM_GATEWAY_URL"])
    assert (gateway.hostname, gateway.path) == ("gateway", "/v1")
    assert gateway.port == _cmd_port(gateway_cmd)
    # Both services share one review budget: the analysis service waits for the gateway.
    assert gateway_env["LLM_TIMEOUT_SECONDS"] == analysis_env["LLM_TIMEOUT_SECONDS"]
    # The model the gateway asks for is the one the ollama service pulls, and its context.
    ollama_env = service_environment(service(compose, "ollama"))
    assert ollama_env["LOCAL_LLM_MODEL"] == gateway_env["LOCAL_LLM_MODEL"]
    assert ollama_env["LLM_CONTEXT_TOKENS"] == gateway_env["LLM_CONTEXT_TOKENS"]


@pytest.mark.parametrize(
    ("name", "target"), [("ollama", "/models"), ("gateway", "/data"), ("analysis", "/data")]
)
def test_compose_keeps_state_in_named_volumes(
    compose: dict[str, Any], name: str, target: str
) -> None:
    svc = service(compose, name)
    dockerfile, stage = service_dockerfile(compose, name)
    env = dockerfile.env(stage) | service_environment(svc)
    volume = dockerfile.require(stage, "VOLUME")

    [mount] = svc["volumes"]
    source, mounted_at = mount.split(":")
    assert source in compose["volumes"], "a named volume, kept across rebuilds"
    assert mounted_at == target
    assert volume.exec_form() == [target]
    data_dir = env["OLLAMA_MODELS"] if name == "ollama" else env["DATA_DIR"]
    assert data_dir == target


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [SERVICES_DOCKERFILE, OLLAMA_DOCKERFILE], ids=["services", "ollama"]
)
def test_images_are_pinned_and_run_as_a_non_root_user(path: Path) -> None:
    dockerfile = Dockerfile.read(path)

    for base in dockerfile.external_bases():
        image, _, tag = base.partition(":")
        # A version number, so a rebuild gets the same base (not latest, not a bare major).
        assert re.fullmatch(r"\d+\.\d+\.\d+(-[a-z0-9.-]+)?", tag), f"{base} is not pinned"
        assert image in ("python", "ollama/ollama"), base
        if image == "python":
            assert tag.endswith("-slim-bookworm"), base
    for stage in dockerfile.final_stages():
        user = dockerfile.effective(stage, "USER")
        assert user is not None, f"{stage.name}: no USER, so it runs as root"
        assert user.args not in ("root", "0"), stage.name
        assert dockerfile.effective(stage, "HEALTHCHECK") is not None, stage.name


def test_the_analysis_image_has_git_and_the_gateway_image_does_not_need_it() -> None:
    dockerfile = Dockerfile.read(SERVICES_DOCKERFILE)

    analysis_runs = " ".join(i.args for i in dockerfile.stage("analysis").all("RUN"))
    gateway_runs = " ".join(
        i.args for s in dockerfile.chain(dockerfile.stage("gateway")) for i in s.all("RUN")
    )

    assert re.search(r"apt-get install .*\bgit\b", analysis_runs)
    assert "ca-certificates" in analysis_runs
    assert "rm -rf /var/lib/apt/lists/*" in analysis_runs  # slim: no apt cache in the layer
    assert "apt-get" not in gateway_runs


def test_dependency_install_is_the_lock_s_main_group() -> None:
    dockerfile = Dockerfile.read(SERVICES_DOCKERFILE)
    builder = dockerfile.stage("builder")
    copied = {w for i in builder.all("COPY") for w in i.words()[:-1]}
    runs = [i.args for i in builder.all("RUN")]
    [poetry_pin] = [pin for pin in PINS if pin.startswith("poetry==")]

    assert {"pyproject.toml", "poetry.lock"} <= copied
    assert any(f"pip install {poetry_pin}" in run for run in runs), (
        f"the builder must install {poetry_pin}, the poetry dev.py pins (it wrote the lock)"
    )
    assert "poetry sync --only main --no-root" in runs
    # The runtime gets the builder's venv, and nothing else from it.
    runtime_copies = [i.words() for i in dockerfile.stage("runtime").all("COPY")]
    assert ["--from=builder", "/opt/venv", "/opt/venv"] in runtime_copies
    assert dockerfile.env(dockerfile.stage("builder"))["VIRTUAL_ENV"] == "/opt/venv"


def _poetry() -> str:
    found = REPO_ROOT / ".tools" / "bin" / "poetry"
    if found.is_file():
        return str(found)
    which = shutil.which("poetry")
    if which is None:
        pytest.fail("poetry not found: run `python3 dev.py test`, which installs it into .tools/")
    return which


def test_the_lock_matches_pyproject_so_the_image_build_can_install_it() -> None:
    result = subprocess.run(
        [_poetry(), "check", "--lock", "--no-interaction"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def _main_group_packages() -> set[str]:
    lock = tomllib.loads((REPO_ROOT / "poetry.lock").read_text())
    return {
        re.sub(r"[-_.]+", "-", package["name"]).lower()
        for package in lock["package"]
        if "main" in package.get("groups", ["main"])
    }


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(node: ast.AST) -> Iterator[str]:
    """Modules imported when the code runs: ``if TYPE_CHECKING:`` blocks are for mypy only."""
    for child in ast.iter_child_nodes(node):
        if _is_type_checking(child):
            continue
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module
        yield from _runtime_imports(child)


def _imported_top_level_modules(root: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for name in _runtime_imports(ast.parse(path.read_text(), str(path))):
            found.setdefault(name.partition(".")[0], str(path.relative_to(REPO_ROOT)))
    return found


def test_the_code_the_images_run_imports_only_locked_main_dependencies() -> None:
    # The images hold the main group only: a dev-only import (pyyaml, moto ...) anywhere in
    # functions/, lazy ones included, would work in tests and fail in a container.
    main = _main_group_packages()
    distributions = importlib.metadata.packages_distributions()

    outside = {}
    for module, where in _imported_top_level_modules(REPO_ROOT / "functions").items():
        if module in sys.stdlib_module_names or module in ("functions", "__future__"):
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [])}
        if not dists & main:
            outside[module] = where

    assert not outside, f"imported by functions/ but not in the lock's main group: {outside}"


# --- the service images, replayed without Docker ---------------------------------------------


@dataclass
class ReplayedImage:
    """The services image's filesystem, rebuilt from the Dockerfile's steps without Docker."""

    dockerfile: Dockerfile
    venv: Path
    app: Path
    data: Path

    def host_path(self, image_path: str) -> str:
        """Map a path inside the image to where the replay keeps it."""
        return image_path.replace("/opt/venv", str(self.venv)).replace("/app", str(self.app))

    def env(self, stage: Stage) -> dict[str, str]:
        """The stage's ENV as the replay runs it (paths mapped, DATA_DIR private)."""
        env = {k: self.host_path(v) for k, v in self.dockerfile.env(stage).items()}
        env["PATH"] = env["PATH"].replace("$PATH", os.environ["PATH"])
        env["DATA_DIR"] = str(self.data)
        return clean_env(env)


def _copy_sources(stage: Stage) -> list[str]:
    """What a stage COPYs from the build context (``--from`` copies come from other stages)."""
    sources = []
    for instruction in stage.all("COPY"):
        words = instruction.words()
        if not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


@pytest.fixture(scope="module")
def replayed_image(tmp_path_factory: pytest.TempPathFactory) -> ReplayedImage:
    """Replay docker/Dockerfile: its build context, the builder's steps, the runtime's COPY."""
    dockerfile = Dockerfile.read(SERVICES_DOCKERFILE)
    root = tmp_path_factory.mktemp("image")
    context = DockerIgnore.read(REPO_ROOT / ".dockerignore").context_files(REPO_ROOT)

    def copy_into(stage: Stage, dest: Path) -> None:
        for source in _copy_sources(stage):
            files = [f for f in context if f == source or f.startswith(source.rstrip("/") + "/")]
            assert files, f"COPY {source}: not in the build context (see .dockerignore)"
            for file in files:
                target = dest / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO_ROOT / file, target)

    build = root / "build"
    copy_into(dockerfile.stage("builder"), build)
    venv_dir = root / "venv"
    venv.EnvBuilder(with_pip=False).create(venv_dir)
    [sync] = [i.args for i in dockerfile.stage("builder").all("RUN") if i.args.startswith("poetry")]
    env = {
        **{k: v for k, v in dockerfile.env(dockerfile.stage("builder")).items() if "POETRY" in k},
        "VIRTUAL_ENV": str(venv_dir),
    }
    result = subprocess.run(
        [_poetry(), *sync.split()[1:]],
        cwd=build,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"{sync} failed:\n{result.stdout}\n{result.stderr}"
    app = root / "app"
    copy_into(dockerfile.stage("runtime"), app)
    return ReplayedImage(dockerfile, venv_dir, app, root / "data")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running(command: list[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> Iterator[None]:
    """Run ``command`` in its own session, output to ``log``; stop it (and its group) after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _wait_healthy(url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer 200 in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.mark.parametrize("target", ["gateway", "analysis"])
def test_each_image_command_serves_and_its_healthcheck_follows_it(
    replayed_image: ReplayedImage, target: str
) -> None:
    dockerfile = replayed_image.dockerfile
    stage = dockerfile.stage(target)
    cmd = dockerfile.require(stage, "CMD")
    healthcheck = dockerfile.require(stage, "HEALTHCHECK")
    workdir = dockerfile.require(stage, "WORKDIR")
    command = cmd.exec_form()
    assert command[:2] == ["uvicorn", f"functions.{target}.app:app"]
    # 0.0.0.0 is right inside a container; here only loopback, on a port that is free.
    assert command[command.index("--host") + 1] == "0.0.0.0"
    image_port = _cmd_port(command)
    port = _free_port()
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    check = [part.replace(f":{image_port}/", f":{port}/") for part in healthcheck.exec_form()]
    env = replayed_image.env(stage)
    cwd = Path(replayed_image.host_path(workdir.args))

    log = replayed_image.data.parent / f"{target}.log"
    with running(command, cwd=cwd, env=env, log=log):
        _wait_healthy(f"http://127.0.0.1:{port}/healthz", log)
        healthy = subprocess.run(check, cwd=cwd, env=env, capture_output=True, check=False)
        body = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        if target == "gateway":
            # The image's own dependencies review code: ruff's binary from the locked venv.
            review = httpx.post(
                f"http://127.0.0.1:{port}/analyze",
                json={"function_code": "def f(a):\n    unused = 1\n    return a\n"},
                timeout=30,
            )
            assert review.status_code == 200, review.text
            assert any("(F841)" in s for s in review.json()["suggestions"]), review.text
    unhealthy = subprocess.run(check, cwd=cwd, env=env, capture_output=True, check=False)

    assert healthy.returncode == 0, healthy.stderr
    assert body["service"] == target
    assert unhealthy.returncode != 0, "the HEALTHCHECK passes with nothing listening"
    # The venv the image runs is the one poetry filled: uvicorn came from it.
    assert shutil.which("uvicorn", path=env["PATH"]) == str(replayed_image.venv / "bin/uvicorn")


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build() -> None:
    ignore = DockerIgnore.read(REPO_ROOT / ".dockerignore")

    for path in (".env", ".venv/bin/python", ".data/jobs.sqlite3", ".git/config", "tests/x.py"):
        assert ignore.ignored(path), path
    for path in ("functions/gateway/app.py", "poetry.lock", "pyproject.toml"):
        assert not ignore.ignored(path), path
    assert ignore.ignored("functions/core/__pycache__/models.cpython-311.pyc")


# --- the Ollama image --------------------------------------------------------------------------


def modelfile() -> tuple[str, dict[str, str]]:
    """The Modelfile's FROM and its PARAMETERs."""
    base, parameters = "", {}
    for raw in MODELFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("FROM "):
            base = line.removeprefix("FROM ").strip()
        elif line.startswith("PARAMETER "):
            _, name, value = line.split(maxsplit=2)
            parameters[name] = value
    return base, parameters


def test_the_modelfile_fits_the_gateway_defaults() -> None:
    base, parameters = modelfile()

    assert base == default("local_llm_model")
    # Ollama drops the start of a prompt longer than num_ctx without an error.
    assert int(parameters["num_ctx"]) >= default("llm_context_tokens")
    assert float(parameters["temperature"]) == default("llm_temperature")
    assert default("llm_max_output_tokens") <= int(parameters["num_predict"])
    assert int(parameters["num_predict"]) < int(parameters["num_ctx"])


def test_the_ollama_image_serves_the_default_model_from_the_volume() -> None:
    dockerfile = Dockerfile.read(OLLAMA_DOCKERFILE)
    [stage] = dockerfile.stages
    env = dockerfile.env(stage)
    copies = {i.words()[0]: i.words()[1] for i in stage.all("COPY")}
    entrypoint = dockerfile.require(stage, "ENTRYPOINT")
    healthcheck = dockerfile.require(stage, "HEALTHCHECK")

    assert env["LOCAL_LLM_MODEL"] == default("local_llm_model")
    assert int(env["OLLAMA_CONTEXT_LENGTH"]) >= default("llm_context_tokens")
    assert env["OLLAMA_HOST"].endswith(":11434")
    assert all((OLLAMA_DIR / source).is_file() for source in copies)
    assert copies["Modelfile"] == "/etc/codereview/Modelfile"
    installed = {Path(dest).name: source for source, dest in copies.items()}
    assert installed[entrypoint.exec_form()[0]] == "entrypoint.sh"
    assert installed[healthcheck.exec_form()[0]] == "healthcheck.sh"
    # The scripts' defaults agree with the image.
    for script in ("entrypoint.sh", "healthcheck.sh"):
        text = (OLLAMA_DIR / script).read_text()
        assert f'"${{LOCAL_LLM_MODEL:-{default("local_llm_model")}}}"' in text, script
    assert "/etc/codereview/Modelfile" in (OLLAMA_DIR / "entrypoint.sh").read_text()
    # The model download on first start must fit in the start period.
    assert "--start-period=15m" in healthcheck.args


# A stand-in for the ollama CLI: records its calls; "models" are files in $FAKE_OLLAMA_DIR.
FAKE_OLLAMA = r"""#!/usr/bin/env bash
set -u
dir="$FAKE_OLLAMA_DIR"
echo "$*" >>"$dir/calls"
case "$1" in
    serve)
        trap 'echo "serve got TERM" >>"$dir/calls"; rm -f "$dir/up"; exit 0' TERM
        touch "$dir/up"
        while :; do sleep 0.05; done ;;
    list) [[ -f "$dir/up" ]] ;;
    show) [[ -f "$dir/up" && -f "$dir/models/$2" ]] ;;
    pull)
        [[ -f "$dir/slow-pull" ]] && sleep 30
        [[ -f "$dir/up" && ! -f "$dir/fail-pull" ]] || { echo "pull failed" >&2; exit 1; }
        touch "$dir/models/$2" ;;
    create) cp "$4" "$dir/models/$2.modelfile" ;;
    run) [[ -f "$dir/models/$2" ]] && echo ready ;;
    *) exit 2 ;;
esac
"""


@dataclass
class FakeOllama:
    """A directory with a stand-in ``ollama`` on PATH, and the environment to run the scripts."""

    root: Path

    @property
    def ready_file(self) -> Path:
        """Where the scripts keep the ready marker."""
        return self.root / "ready"

    def env(self, **extra: str) -> dict[str, str]:
        """The scripts' environment: the stand-in first on PATH, our files instead of /etc."""
        return {
            **os.environ,
            "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_OLLAMA_DIR": str(self.root),
            "CODEREVIEW_MODELFILE": str(MODELFILE),
            "CODEREVIEW_READY_FILE": str(self.ready_file),
            **extra,
        }

    def calls(self) -> list[str]:
        """The stand-in's calls so far."""
        path = self.root / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def health(self, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run healthcheck.sh."""
        return subprocess.run(
            [str(OLLAMA_DIR / "healthcheck.sh")],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )


@pytest.fixture
def fake_ollama(tmp_path: Path) -> FakeOllama:
    """A fresh stand-in ``ollama`` with no models."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "models").mkdir()
    cli = tmp_path / "bin" / "ollama"
    cli.write_text(FAKE_OLLAMA)
    cli.chmod(0o755)
    return FakeOllama(tmp_path)


@contextlib.contextmanager
def entrypoint(fake: FakeOllama, **extra: str) -> Iterator[subprocess.Popen[str]]:
    """Run entrypoint.sh as a container would (its own session); kill whatever is left after."""
    process = subprocess.Popen(
        [str(OLLAMA_DIR / "entrypoint.sh")],
        env=fake.env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def _wait_for(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_first_start_pulls_tunes_and_proves_the_model_before_it_is_healthy(
    fake_ollama: FakeOllama,
) -> None:
    model = "qwen2.5-coder:1.5b"
    unhealthy_before = fake_ollama.health(LOCAL_LLM_MODEL=model)

    with entrypoint(fake_ollama, LOCAL_LLM_MODEL=model, LLM_CONTEXT_TOKENS="16384") as process:
        assert _wait_for(fake_ollama.ready_file.exists), fake_ollama.calls()
        healthy = fake_ollama.health(LOCAL_LLM_MODEL=model)
        process.send_signal(signal.SIGTERM)  # docker stop
        exit_code = process.wait(timeout=5)
        output = process.communicate()[0]

    assert unhealthy_before.returncode == 1
    assert "not ready yet" in unhealthy_before.stderr
    assert healthy.returncode == 0, healthy.stderr
    calls = [c for c in fake_ollama.calls() if c != "list"]
    assert calls[:2] == ["serve", f"show {model}"]
    assert calls[2] == f"pull {model}"
    assert calls[3].startswith(f"create {model} -f ")
    assert calls[4].startswith(f"run {model} ")
    assert calls[5:] == [f"show {model}", "serve got TERM"]  # the healthcheck's, then stop
    tuned = (fake_ollama.root / "models" / f"{model}.modelfile").read_text()
    _, parameters = modelfile()
    assert f"FROM {model}\n" in tuned
    assert "PARAMETER num_ctx 16384\n" in tuned  # LLM_CONTEXT_TOKENS, as compose passes it
    assert f"PARAMETER temperature {parameters['temperature']}\n" in tuned
    assert f"PARAMETER num_predict {parameters['num_predict']}\n" in tuned
    assert exit_code == 143
    assert f"{model} answered" in output


def test_a_restart_uses_the_model_in_the_volume_without_pulling(fake_ollama: FakeOllama) -> None:
    (fake_ollama.root / "models" / "qwen2.5-coder:0.5b").touch()

    with entrypoint(fake_ollama, LOCAL_LLM_MODEL="qwen2.5-coder:0.5b"):
        assert _wait_for(fake_ollama.ready_file.exists), fake_ollama.calls()

    assert not any(call.startswith("pull") for call in fake_ollama.calls())
    tuned = (fake_ollama.root / "models" / "qwen2.5-coder:0.5b.modelfile").read_text()
    assert tuned == MODELFILE.read_text()  # no LLM_CONTEXT_TOKENS: the Modelfile as written


def test_a_failed_pull_stops_the_container_with_the_reason(fake_ollama: FakeOllama) -> None:
    (fake_ollama.root / "fail-pull").touch()

    with entrypoint(fake_ollama, LOCAL_LLM_MODEL="no-such-model:7b") as process:
        exit_code = process.wait(timeout=10)
        output = process.communicate()[0]

    assert exit_code == 1
    assert "could not pull no-such-model:7b" in output
    assert "serve got TERM" in fake_ollama.calls()
    assert not fake_ollama.ready_file.exists()


def test_docker_stop_during_the_first_pull_stops_at_once(fake_ollama: FakeOllama) -> None:
    (fake_ollama.root / "slow-pull").touch()

    with entrypoint(fake_ollama) as process:
        assert _wait_for(lambda: any(c.startswith("pull") for c in fake_ollama.calls()))
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=5)
        stopped_after = time.monotonic() - started

    assert exit_code == 143
    assert stopped_after < 2.0  # docker stop's grace period is 10 s; a pull takes minutes
    assert "serve got TERM" in fake_ollama.calls()
