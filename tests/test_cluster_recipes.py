"""The cluster recipes of docs/cluster.md parse, and every command in them is a valid one.

``docs/cluster/`` holds the Ray Jobs script, the KubeRay ``RayJob`` with its shared volume, the
image's Dockerfile and the Ray cluster-launcher config. Every ``rest-sweep ...`` command found in
them or in a shell block of docs/cluster.md (also after ``ray job submit ... --`` or ``kubectl
exec ... --``, inside quoted command strings and YAML strings) is parsed by the real CLI parser,
its grid resolved and its ``--set`` applied to that grid; every ``ray ...`` command is parsed by
Ray's own click CLI (``ray job submit``, ``ray up``, ``ray start`` ...). The YAML files get
structural checks (one volume at one path on every pod, 4 nodes x 8 GPUs, token auth) and the
cluster-launcher config is validated with Ray's schema and the checks ``ray up`` runs first.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cluster.md"
RECIPES = ROOT / "docs" / "cluster"
SHARED = "/mnt/rest"  # the one mount point of the recipes: data root and storage live under it
NODES, GPUS_PER_NODE = 4, 8

# Example values of the shell variables the recipes and the doc's shell blocks use. A variable
# missing here fails the test (add it), so every command is parsed with concrete values.
EXAMPLES = {
    "0": "docs/cluster/ray-job.sh",
    "RAY_DASHBOARD": "http://localhost:8265",
    "RAY_AUTH_MODE": "token",
    "DATA_ROOT": "/mnt/rest/data",
    "STORAGE": "/mnt/rest/sweeps",
    "GRID": "paper-all",
    "NAME": "paper-all",
    "JOB_ID": "rest-sweep-paper-all-20250101-000000",
    "WORKING_DIR": ".",
    "GPUS_PER_TRIAL": "simple_cnn=0.25,resnet18=0.5",
    "CPUS_PER_TRIAL": "2",
    "MAX_FAILURES": "3",
    "CHECKPOINT_EVERY": "5",
    "KEEP_CHECKPOINTS": "1",
    "FINAL_CHECKPOINT": "weights",
    "JOB_STATUS": "Job 'rest-sweep-paper-all-20250101-000000' succeeded",
    "HOME": "/home/ubuntu",
    "RAY_HEAD_IP": "10.0.0.10",
}

PROGRAMS = ("rest-sweep", "ray")
PREFIXES = {"exec", "nohup", "time", "sudo", "env", "command"}  # words before a program
OPERATORS = {";", "&", "&&", "|", "||", "(", ")", ";;", "|&"}  # end a simple command
SHELL_LANGS = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Command:
    """One ``rest-sweep`` or ``ray`` command found in a recipe: where, and its arguments."""

    where: str  # "docs/cluster/ray-job.sh:33"
    program: str  # "rest-sweep" or "ray"
    argv: tuple[str, ...]  # the arguments after the program name

    def __str__(self) -> str:
        return f"{self.where}: {self.program} {shlex.join(self.argv)}"


# ---------------------------------------------------------------------- reading shell text


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, line) with backslash continuations joined and comment lines dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
            if raw.lstrip().startswith("#"):
                continue
        if raw.endswith("\\"):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = " ".join(part.strip() for part in pending)
        pending = []
        if line:
            yield start, line
    if pending:
        yield start, " ".join(pending)


VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def substitute(line: str) -> str:
    """``$(...)`` -> a placeholder, ``$VAR``/``${VAR}``/``${VAR:-default}`` -> EXAMPLES."""
    line = re.sub(r"\$\([^()]*\)", "0", line)

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in EXAMPLES:
            return EXAMPLES[name]
        if match.group(2) is not None:
            return match.group(2)
        raise AssertionError(f"${name} has no example value: add it to EXAMPLES ({line})")

    return VAR.sub(value, line)


def tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def find_commands(text: str, where: str, line_offset: int = 0) -> Iterator[Command]:
    """Every ``rest-sweep``/``ray`` command in shell ``text`` (see the module docstring)."""
    for number, line in logical_lines(text):
        here = f"{where}:{number + line_offset}"
        yield from _commands_in(tokens(substitute(line)), here)


def _commands_in(words: list[str], where: str) -> Iterator[Command]:
    segment: list[str] = []
    for word in [*words, ";"]:
        if word in OPERATORS or (word and set(word) <= set(";&|()")):
            yield from _segment_commands(segment, where)
            segment = []
        else:
            segment.append(word)


def _segment_commands(words: list[str], where: str) -> Iterator[Command]:
    i = 0
    while i < len(words) and (re.fullmatch(r"\w+=.*", words[i]) or words[i] in PREFIXES):
        i += 1
    head = words[i:]
    if head and PurePosixPath(head[0]).name in PROGRAMS:
        args = []
        for word in head[1:]:  # a redirection ends the arguments
            if word in {">", ">>", "<", ">&", "<&"}:
                break
            args.append(word)
        yield Command(where, PurePosixPath(head[0]).name, tuple(args))
    if "--" in words:  # `ray job submit ... -- CMD`, `kubectl exec POD -- CMD`
        nested = words[words.index("--") + 1 :]
        yield from _segment_commands(nested, where)
    for word in words:  # `ray exec cluster.yaml 'CMD'`, `bash -c 'CMD'`
        if " " in word.strip():
            with contextlib.suppress(ValueError):  # prose or JSON, not a command
                yield from _commands_in(tokens(word), where)


def yaml_strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from yaml_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from yaml_strings(value)


def yaml_commands(path: Path) -> list[Command]:
    where = str(path.relative_to(ROOT))
    source = [line.strip() for line in path.read_text().splitlines()]
    used: set[int] = set()
    found = []
    for document in yaml.safe_load_all(path.read_text()):
        for text in yaml_strings(document):
            if len(text.split()) < 2:  # a command has arguments; `cluster_name: rest-sweep` not
                continue
            # the file line where the string starts (for the test id): the first unused one
            # holding its first three words (a folded `>-` string keeps them on one line)
            head = " ".join(text.split()[:3])
            line = next((n for n, s in enumerate(source, 1) if head in s and n not in used), 1)
            used.add(line)
            found.extend(find_commands(text, where, line_offset=line - 1))
    return found + comment_commands(path)


def comment_commands(path: Path) -> list[Command]:
    """Commands shown in a file's usage comments: lines ``#   command`` (indented after #)."""
    where = str(path.relative_to(ROOT))
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        usage = re.match(r"^#\s{2,}(\S.*)$", line)
        if usage:
            found.extend(_commands_in(tokens(substitute(usage.group(1))), f"{where}:{number}"))
    return found


def dockerfile_run_lines(path: Path) -> list[tuple[int, str]]:
    return [(n, line[4:]) for n, line in logical_lines(path.read_text()) if line.startswith("RUN ")]


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # line of the opening fence
    marker: str  # the `<!-- verbatim: ... -->` / `<!-- excerpt: ... -->` comment just above


def doc_blocks() -> list[Block]:
    """The fenced code blocks of docs/cluster.md."""
    blocks: list[Block] = []
    lines = DOC.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = above.strip() if above.strip().startswith("<!--") else ""
        text = "\n".join(lines[start + 1 : end]) + "\n"
        blocks.append(Block(fence.group(1), text, start + 1, marker))
        i = end + 1
    return blocks


def doc_commands() -> list[Command]:
    found: list[Command] = []
    for block in doc_blocks():
        if block.lang not in SHELL_LANGS:
            continue
        text = block.text
        if block.lang == "console":
            text = "\n".join(line[2:] for line in text.splitlines() if line.startswith("$ "))
        found.extend(find_commands(text, "docs/cluster.md", line_offset=block.line))
    return found


def all_commands() -> list[Command]:
    script = RECIPES / "ray-job.sh"
    found = list(find_commands(script.read_text(), "docs/cluster/ray-job.sh"))
    found.extend(comment_commands(script))
    for name in ("rayjob.yaml", "shared-volume.yaml", "cluster.yaml"):
        found.extend(yaml_commands(RECIPES / name))
    for number, line in dockerfile_run_lines(RECIPES / "Dockerfile"):
        found.extend(_commands_in(tokens(substitute(line)), f"docs/cluster/Dockerfile:{number}"))
    found.extend(comment_commands(RECIPES / "Dockerfile"))
    found.extend(doc_commands())
    return found


def option_values(argv: tuple[str, ...], flag: str) -> list[str]:
    """The values given to ``flag`` (``--flag v`` or ``--flag=v``)."""
    values = []
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif word.startswith(flag + "="):
            values.append(word.split("=", 1)[1])
    return values


COMMANDS = all_commands()
REST_SWEEP = [c for c in COMMANDS if c.program == "rest-sweep"]
RAY = [c for c in COMMANDS if c.program == "ray"]


# ---------------------------------------------------------------------- parsing the commands


def parse_rest_sweep(command: Command):
    from rest_sweep.cli import build_parser

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return build_parser().parse_args(list(command.argv))
        except SystemExit:
            pytest.fail(f"{command}\n  does not parse: {stderr.getvalue().strip()}")


def parse_ray(command: Command):
    """Ray's click CLI parses the command (options, arguments) without running it."""
    import click
    from ray.scripts.scripts import cli

    group, ctx, name, args = cli, None, "ray", list(command.argv)
    try:
        while True:
            ctx = group.make_context(name, args, parent=ctx)
            if not isinstance(group, click.Group):
                return ctx
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            name, group, args = group.resolve_command(ctx, rest)
    except click.ClickException as error:
        pytest.fail(f"{command}\n  does not parse: {error.format_message()}")


def test_the_recipes_hold_the_commands_the_doc_promises():
    def at(path: str) -> list[Command]:
        return [c for c in COMMANDS if c.where.startswith(path + ":")]

    def verbs(commands: list[Command]) -> set[str]:
        return {c.argv[0] for c in commands if c.program == "rest-sweep" and c.argv}

    assert {"run", "resume", "status"} <= verbs(at("docs/cluster/ray-job.sh"))
    submits = [c for c in at("docs/cluster/ray-job.sh") if c.argv[:2] == ("job", "submit")]
    assert len(submits) == 3 and all("rest-sweep" in c.argv for c in submits)
    assert verbs(at("docs/cluster/rayjob.yaml")) == {"run"}
    assert verbs(at("docs/cluster/shared-volume.yaml")) == {"data"}
    assert verbs(at("docs/cluster/Dockerfile")) == {"grids"}
    starts = [c.argv for c in at("docs/cluster/cluster.yaml") if c.argv[:1] == ("start",)]
    assert any("--head" in a for a in starts)
    assert any(a[1].startswith("--address=") for a in starts if len(a) > 1)
    assert {"run", "resume", "status", "data", "grids"} <= verbs(at("docs/cluster.md"))


@pytest.mark.parametrize("command", REST_SWEEP, ids=str)
def test_every_rest_sweep_command_parses(command: Command):
    import search_spaces

    args = parse_rest_sweep(command)
    grid = getattr(args, "grid", None)
    if args.command == "grids" and args.action == "list":
        grid = None
    sets = getattr(args, "sets", None) or []
    overrides = search_spaces.parse_overrides(sets)  # each --set parses
    if grid:  # the grid resolves, and every --set applies to some trial of it
        search_spaces.expand(search_spaces.resolve(grid), overrides)


@pytest.mark.parametrize(
    "command", [c for c in REST_SWEEP if option_values(c.argv, "--gpus-per-trial")], ids=str
)
def test_gpu_shares_are_fractions_of_registered_models(command: Command):
    from trainables.models import MODELS

    for value in option_values(command.argv, "--gpus-per-trial"):
        for item in value.split(","):
            model, _, share = item.rpartition("=")
            if model:
                assert model in MODELS.names(), f"{command}: {model} is not a model"
            assert 0 < float(share) <= 1 or float(share).is_integer(), f"{command}: {share}"


@pytest.mark.parametrize("command", RAY, ids=str)
def test_every_ray_command_parses(command: Command):
    parse_ray(command)


def test_cluster_recipes_use_the_shared_mount_for_data_and_storage():
    recipes = [c for c in REST_SWEEP if c.where.startswith("docs/cluster/")]
    assert recipes
    for command in recipes:
        for flag in ("--data-root", "--storage"):
            for path in option_values(command.argv, flag):
                assert "://" in path or path.startswith(SHARED + "/"), f"{command}: {flag}"


# ---------------------------------------------------------------------- the shell recipe


def test_ray_job_script_is_valid_bash():
    script = RECIPES / "ray-job.sh"
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert os.access(script, os.X_OK)


FAKE_RAY = r"""#!/usr/bin/env bash
# A fake `ray` CLI: records its arguments, prints a job's status as Ray's CLI does.
printf '%s\n' "$*" >> "$FAKE_RAY_CALLS"
case "$1 $2" in
"job status")
    id=${!#}
    case "$FAKE_JOB_STATUS" in
    SUCCEEDED) printf -- "---\nJob '%s' succeeded\n---\n" "$id" ;;
    FAILED) printf -- "Job '%s' failed\nStatus message: exit code 2\n" "$id" ;;
    *) printf "Status for job '%s': %s\n" "$id" "$FAKE_JOB_STATUS" ;;
    esac
    ;;
"job logs") echo "the job's log" ;;
esac
exit 0  # like `ray job logs --follow`, whatever the job did
"""


def run_ray_job_script(tmp_path: Path, job_status: str, *args: str, **env: str):
    """Run docs/cluster/ray-job.sh with a fake ``ray`` first on PATH; (result, ray calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "ray"
    fake.write_text(FAKE_RAY)
    fake.chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    environ = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_RAY_CALLS": str(calls),
        "FAKE_JOB_STATUS": job_status,
        "JOB_ID": "job-1",
        **env,
    }
    result = subprocess.run(
        ["bash", str(RECIPES / "ray-job.sh"), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )
    return result, [shlex.split(line) for line in calls.read_text().splitlines()]


def test_ray_job_script_passes_its_variables_to_the_submitted_command(tmp_path: Path):
    result, calls = run_ray_job_script(
        tmp_path,
        "SUCCEEDED",
        "run",
        RAY_DASHBOARD="http://head:8265",
        STORAGE="/mnt/rest/other",
        NAME="try1",
        GRID="demo",
        DATA_ROOT="/mnt/rest/d2",
        WORKING_DIR="/src/checkout",
        CPUS_PER_TRIAL="4",
        GPUS_PER_TRIAL="0",
        MAX_FAILURES="7",
        CHECKPOINT_EVERY="2",
    )
    assert result.returncode == 0, result.stderr
    submit = next(c for c in calls if c[:2] == ["job", "submit"])
    job = submit[submit.index("--") + 1 :]
    assert option_values(tuple(submit), "--address") == ["http://head:8265"]
    assert option_values(tuple(submit), "--working-dir") == ["/src/checkout"]
    assert option_values(tuple(submit), "--submission-id") == ["job-1"]
    assert job[:2] == ["rest-sweep", "run"]
    for flag, value in {
        "--grid": "demo",
        "--data-root": "/mnt/rest/d2",
        "--storage": "/mnt/rest/other",
        "--name": "try1",
        "--gpus-per-trial": "0",
        "--cpus-per-trial": "4",
        "--max-failures": "7",
    }.items():
        assert option_values(tuple(job), flag) == [value], flag
    assert "checkpoint_every=2" in option_values(tuple(job), "--set")
    parse_rest_sweep(Command("ray-job.sh", "rest-sweep", tuple(job[1:])))
    # then it follows the job and asks for its status
    assert ["job", "logs", "--address", "http://head:8265", "--follow", "job-1"] in calls
    assert calls[-1] == ["job", "status", "--address", "http://head:8265", "job-1"]


def test_ray_job_script_defaults_the_gpu_shares_of_the_recipes(tmp_path: Path):
    result, calls = run_ray_job_script(tmp_path, "SUCCEEDED", "run")
    assert result.returncode == 0, result.stderr
    submit = next(c for c in calls if c[:2] == ["job", "submit"])
    job = tuple(submit[submit.index("--") + 1 :])
    assert option_values(job, "--gpus-per-trial") == ["simple_cnn=0.25,resnet18=0.5"]


@pytest.mark.parametrize("verb", ["run", "resume", "status"])
@pytest.mark.parametrize(
    ("job_status", "code"), [("SUCCEEDED", 0), ("FAILED", 1), ("STOPPED", 1), ("RUNNING", 1)]
)
def test_ray_job_script_exits_with_the_jobs_outcome(
    tmp_path: Path, verb: str, job_status: str, code: int
):
    result, calls = run_ray_job_script(tmp_path, job_status, verb)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert calls[-1][:2] == ["job", "status"]
    if code:
        assert "job-1 did not succeed" in result.stderr


def test_doc_shell_blocks_are_valid_bash():
    for block in doc_blocks():
        if block.lang in {"sh", "bash"}:
            result = subprocess.run(
                ["bash", "-n"], input=block.text, capture_output=True, text=True
            )
            assert result.returncode == 0, f"docs/cluster.md:{block.line}: {result.stderr}"


# ---------------------------------------------------------------------- KubeRay


def load_all(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((RECIPES / name).read_text()) if d]


def ray_container(pod_spec: dict) -> dict:
    return pod_spec["containers"][0]  # KubeRay: the Ray container is the first one


def shared_mounts(pod_spec: dict) -> set[tuple[str, str]]:
    """(volume source, mount path) of the Ray container's PVC and NFS mounts."""
    sources = {}
    for volume in pod_spec.get("volumes", []):
        if "persistentVolumeClaim" in volume:
            sources[volume["name"]] = "pvc:" + volume["persistentVolumeClaim"]["claimName"]
        elif "nfs" in volume:
            sources[volume["name"]] = f"nfs:{volume['nfs']['server']}:{volume['nfs']['path']}"
    return {
        (sources[m["name"]], m["mountPath"])
        for m in ray_container(pod_spec).get("volumeMounts", [])
        if m["name"] in sources
    }


def test_rayjob_is_a_kuberay_v1_rayjob_that_runs_the_sweep_and_cleans_up():
    (job,) = load_all("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    spec = job["spec"]
    assert isinstance(spec["entrypoint"], str)
    assert spec["entrypoint"].startswith("rest-sweep run ")
    assert spec["shutdownAfterJobFinishes"] is True
    assert isinstance(spec.get("ttlSecondsAfterFinished", 0), int)
    assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] >= 1
    assert set(spec) <= {
        "entrypoint",
        "shutdownAfterJobFinishes",
        "ttlSecondsAfterFinished",
        "backoffLimit",
        "rayClusterSpec",
        "runtimeEnvYAML",
        "submissionMode",
        "activeDeadlineSeconds",
        "submitterPodTemplate",
        "suspend",
    }


def test_rayjob_cluster_is_four_nodes_of_eight_gpus_with_one_shared_volume():
    import ray

    (job,) = load_all("rayjob.yaml")
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__  # the driver's Ray is the cluster's Ray
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]["template"]["spec"]
    groups = cluster["workerGroupSpecs"]
    assert isinstance(cluster["headGroupSpec"]["rayStartParams"], dict)
    pods = [head] + [g["template"]["spec"] for g in groups]
    for group in groups:
        assert group["minReplicas"] == group["replicas"] == group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict) and group["groupName"]
    assert 1 + sum(g["replicas"] for g in groups) == NODES
    for pod in pods:
        container = ray_container(pod)
        assert container["image"] == ray_container(head)["image"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) == GPUS_PER_NODE
        assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO") == "1"
    mounts = shared_mounts(head)
    assert any(path == SHARED for _, path in mounts), mounts
    for pod in pods[1:]:
        assert shared_mounts(pod) == mounts  # the same volume at the same path everywhere


def test_shared_volume_is_the_rayjobs_claim_at_the_same_path():
    (job,) = load_all("rayjob.yaml")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    claim, pod = load_all("shared-volume.yaml")
    assert claim["apiVersion"] == "v1" and claim["kind"] == "PersistentVolumeClaim"
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert ("pvc:" + claim["metadata"]["name"], SHARED) in shared_mounts(head)
    assert shared_mounts(pod["spec"]) == shared_mounts(head)
    assert ray_container(pod["spec"])["image"] == ray_container(head)["image"]


def test_dockerfile_builds_on_the_drivers_ray_and_installs_the_cluster_extra():
    import ray

    lines = [line for _, line in logical_lines((RECIPES / "Dockerfile").read_text())]
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert base.startswith(f"rayproject/ray:{ray.__version__}-py311")
    assert any(".[cluster]" in line for line in lines if line.startswith("RUN "))


# ---------------------------------------------------------------------- Ray cluster launcher


def test_cluster_launcher_config_passes_rays_schema_and_up_validation():
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((RECIPES / "cluster.yaml").read_text())
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` runs before ssh


def test_cluster_launcher_config_has_four_nodes_the_mount_the_env_and_the_token():
    config = yaml.safe_load((RECIPES / "cluster.yaml").read_text())
    provider = config["provider"]
    assert provider["type"] == "local"
    assert 1 + len(provider["worker_ips"]) == NODES and provider["head_ip"]
    assert config["auth"]["ssh_user"]
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any(f" {SHARED}" in c and "mount" in c for c in config["initialization_commands"])
    assert any("rest-sweep[cluster]" in c for c in config["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert "RAY_AUTH_MODE=token" in start and "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1" in start


# ---------------------------------------------------------------------- the doc and the files


def test_doc_links_every_recipe_and_every_link_resolves():
    text = DOC.read_text()
    links = set(re.findall(r"\]\((cluster/[^)#\s]+)\)", text))
    files = {f"cluster/{p.name}" for p in RECIPES.iterdir() if p.is_file()}
    assert files <= links, f"not linked from docs/cluster.md: {sorted(files - links)}"
    assert links <= files, f"links to missing files: {sorted(links - files)}"


def test_doc_blocks_marked_verbatim_or_excerpt_match_the_files():
    marked = [b for b in doc_blocks() if b.marker]
    assert any("verbatim" in b.marker for b in marked)
    for block in marked:
        match = re.fullmatch(r"<!--\s*(verbatim|excerpt):\s*(\S+)\s*-->", block.marker)
        assert match, f"docs/cluster.md:{block.line}: unknown marker {block.marker}"
        kind, name = match.groups()
        content = (ROOT / "docs" / name).read_text()
        if kind == "verbatim":
            assert block.text == content, f"docs/cluster.md:{block.line} differs from {name}"
        else:
            assert block.text in content, f"docs/cluster.md:{block.line} is not in {name}"
