"""infra/ and workflows/: every file parses, every `tased-batch` command line named there exists.

The command check parses each line with the real Click command behind the Typer app, so a
renamed subcommand or flag, or a value of the wrong type, breaks this test.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import click
import pytest
import typer
import yaml

# Typer may vendor Click: its usage errors derive from TyperException there, from Click's otherwise.
USAGE_ERRORS = (click.ClickException, getattr(typer.exceptions, "TyperException", click.ClickException))
EXIT_ERRORS = (click.exceptions.Exit, typer.Exit)
COMMENT_COMMANDS = ("tased-batch ", "ray ", "python ")
ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
WORKFLOWS = ROOT / "workflows"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
CLUSTER = INFRA / "aws" / "cluster.yaml"
RAYJOB = INFRA / "kuberay" / "rayjob.yaml"
# A value assigned to a secret key; Dagster's EnvVar("...") is a reference to the environment, not a value.
_VALUE = r"\s*[=:]\s*(?!(?:dg\.)?EnvVar\()\S"
SECRET_ASSIGNMENT = re.compile(
    rf"(AKIA[0-9A-Z]{{16}}|aws_secret_access_key{_VALUE}|AWS_SECRET_ACCESS_KEY{_VALUE}|secretKeyRef|kind:\s*Secret\b)",
    re.IGNORECASE,
)


def _deploy_files() -> list[Path]:
    return sorted(p for d in (INFRA, WORKFLOWS) for p in d.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _strings(node) -> list[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _shell_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown file marked bash/sh/shell or unmarked, continuations joined."""
    blocks: list[str] = []
    language, lines = None, []
    for line in markdown.splitlines():
        if line.startswith("```"):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                if language in ("", "bash", "sh", "shell"):
                    blocks.append("\n".join(lines).replace("\\\n", " "))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def _command_lines(path: Path) -> list[str]:
    """Shell text that may hold `tased-batch` commands: YAML values and comments, code blocks, RUN lines."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        comments = [line.split("#", 1)[1].strip() for line in text.splitlines() if "#" in line]
        comments = [c for c in comments if c.startswith(COMMENT_COMMANDS)]  # commands, not prose
        return comments + [s for doc in yaml.safe_load_all(text) for s in _strings(doc)]
    if path.suffix == ".md":
        return _shell_blocks(text)
    if path.name == "Dockerfile":
        return [args for kind, args in _dockerfile_instructions(path) if kind == "RUN"]
    return []


def _tased_commands(text: str) -> list[list[str]]:
    """argv lists (after `tased-batch`) in shell text; quoted commands (ray exec "...") are opened."""
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip().lstrip("$ ").strip()
        if "tased-batch " not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:
            continue  # prose, not a command
        for token in tokens:
            if " " in token and "tased-batch " in token:
                found.extend(_tased_commands(token))
        words: list[str] = []
        inside = False
        for token in tokens + [";"]:
            if token == "tased-batch":
                inside, words = True, []
            elif inside and token[0] in ";&|<>()":
                found.append(words)
                inside = False
            elif inside:
                words.append(token)
    return found


def _all_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path in _deploy_files():
        for text in _command_lines(path):
            for argv in _tased_commands(text):
                commands.append((str(path.relative_to(ROOT)), argv))
    return commands


def _check_command(argv: list[str]) -> None:
    """Parse argv with the app's commands, as the CLI would; raises a usage error for unknown commands/options."""
    from tased_batch.cli.main import app

    command = typer.main.get_command(app)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ctx = command.make_context("tased-batch", list(argv))
            while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
                protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
                name, sub, rest = command.resolve_command(ctx, [*protected, *ctx.args])
                ctx = sub.make_context(name, rest, parent=ctx)
                command = sub
    except EXIT_ERRORS as e:  # --help: a valid command line that prints and exits
        assert e.exit_code == 0


def test_commands_named_in_infra_and_workflows_exist():
    commands = _all_commands()
    where = {" ".join(argv[:1]) for _, argv in commands}
    # The entrypoints that must be there: the RayJob's, the cluster's, the workflows' and resume.
    assert {"run", "resume", "status"} <= where, where
    sources = {source for source, _ in commands}
    assert {
        "infra/kuberay/rayjob.yaml",
        "infra/aws/cluster.yaml",
        "infra/aws/README.md",
        "workflows/retry-failed.yaml",
    } <= sources
    for source, argv in commands:
        try:
            _check_command(argv)
        except USAGE_ERRORS as e:
            pytest.fail(f"{source}: `tased-batch {shlex.join(argv)}`: {e}")
        if "--config" in argv and "workflows/" in argv[argv.index("--config") + 1]:
            name = argv[argv.index("--config") + 1].split("workflows/", 1)[1]
            assert (WORKFLOWS / name).is_file(), f"{source}: --config names a missing workflow {name}"


def test_command_check_catches_a_renamed_flag():
    with pytest.raises(USAGE_ERRORS, match="--retry-faild"):
        _check_command(["resume", "s3://b/out/", "--retry-faild"])
    with pytest.raises(USAGE_ERRORS, match="runn"):
        _check_command(["runn", "in", "out"])
    with pytest.raises(typer.BadParameter, match="integer"):
        _check_command(["run", "in", "out", "--actors", "four"])
    assert _tased_commands('ray exec c.yaml --tmux "tased-batch run --config f.yaml --address auto"') == [
        ["run", "--config", "f.yaml", "--address", "auto"]
    ]


def test_every_yaml_parses_and_no_credentials_anywhere():
    files = _deploy_files()
    assert {CLUSTER, RAYJOB, DOCKERFILE} <= set(files)
    for path in files:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            docs = list(yaml.safe_load_all(text))
            assert docs and all(isinstance(d, dict) for d in docs), path
        assert not SECRET_ASSIGNMENT.search(text), f"{path}: credentials must come from the environment or a role"


def test_dockerfile_cuda_base_non_root_no_secrets():
    instructions = _dockerfile_instructions(DOCKERFILE)
    kinds = [k for k, _ in instructions]
    assert kinds[0] in ("ARG", "FROM") and "FROM" in kinds
    args = dict(re.match(r"(\w+)(?:=(.*))?", a).groups() for k, a in instructions if k == "ARG")
    base = next(a for k, a in instructions if k == "FROM")
    base = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)] or "", base)
    assert re.search(r"-cu\d+|cuda", base), f"not a CUDA image: {base}"
    user = [a for k, a in instructions if k == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0"), "the image must end as a non-root user"
    env_names = {name for k, a in instructions if k in ("ENV", "ARG") for name in re.findall(r"(\w+)=", a + "=")}
    assert not {n for n in env_names if re.search(r"AWS_|SECRET|TOKEN|PASSWORD", n)}, env_names
    # Weights: the cache the package reads, populated at build time or mounted.
    from tased_batch.model.weights import CACHE_ENV, RELEASED_FILE

    env = " ".join(a for k, a in instructions if k == "ENV")
    assert f"{CACHE_ENV}=/opt/tased-batch/weights" in env
    assert RELEASED_FILE in DOCKERFILE.read_text()
    # Every COPY source is in the repository and let through by the Dockerfile's .dockerignore.
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for kind, arg in instructions:
        if kind != "COPY":
            continue
        sources = [s for s in shlex.split(arg) if not s.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository (docker build would fail)"
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), source


def test_cluster_config_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load(CLUSTER.read_text())
    config = prepare_config(raw)
    validate_config(config)  # Ray's JSON schema: what `ray up` checks first
    assert config["provider"]["type"] == "aws"
    assert config["setup_commands"] == [] and config["worker_setup_commands"] == []  # no Ray defaults
    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] == workers["max_workers"] >= 1
    assert workers["node_config"]["InstanceType"].startswith(("g", "p"))
    for node in config["available_node_types"].values():
        assert "IamInstanceProfile" in node["node_config"]  # S3 access from the role
    mounts = config["file_mounts"]
    assert (ROOT / mounts["/home/ray/workflows"]).resolve() == WORKFLOWS
    # The workflow the README runs is mounted where the command says.
    assert any(
        argv[:3] == ["run", "--config", "/home/ray/workflows/archive-to-parquet.yaml"]
        for source, argv in _all_commands()
        if source.startswith("infra/aws/")
    )


def test_rayjob_manifest_runs_the_mounted_config_on_gpu_workers(tmp_path):
    from tased_batch.config import RunConfig, read_config_file

    docs = {d["kind"]: d for d in yaml.safe_load_all(RAYJOB.read_text())}
    assert set(docs) == {"ServiceAccount", "ConfigMap", "RayJob"}
    job = docs["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["tased-batch", "run"] and "--address" in argv
    config_path = argv[argv.index("--config") + 1]

    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for c in head["containers"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in head["volumes"]}
    (volume,) = [n for n, path in mounts.items() if config_path.startswith(path + "/")]
    configmap = docs["ConfigMap"]
    assert volumes[volume]["configMap"]["name"] == configmap["metadata"]["name"]
    name = config_path.rsplit("/", 1)[1]
    copy = tmp_path / name
    copy.write_text(configmap["data"][name])
    RunConfig(**read_config_file(str(copy))).validate()

    role = docs["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::")
    workers = cluster["workerGroupSpecs"]
    assert workers and all(
        int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        for g in workers
        for c in g["template"]["spec"]["containers"]
    )
    pods = [head] + [g["template"]["spec"] for g in workers]
    assert all(p["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"] for p in pods)
    images = {c["image"] for p in pods for c in p["containers"]}
    assert images == {yaml.safe_load(CLUSTER.read_text())["docker"]["image"]}  # one image everywhere
    base_ray = re.search(r"rayproject/ray:([\d.]+)-", DOCKERFILE.read_text()).group(1)
    assert cluster["rayVersion"] == base_ray
