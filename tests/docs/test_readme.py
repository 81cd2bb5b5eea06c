"""Every shell command in the README works, run as written against a running demo.

The blocks run in order in one shell session (``tests/docs/readme.py`` says how a block
is excluded): a command that exits non-zero, a ``curl`` that fails or answers a
GraphQL error, a command a newcomer does not have, or a block that runs over its time
fails the test, naming the block's line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.readme import README, SHELLS, blocks, readme_blocks
from tests.ops.serve import clean_env, serving

ROOT = README.parent
BLOCK_WITHIN = 120  # seconds: a few `mark1` starts on a loaded two-core machine

# Shell helpers every block runs with: curl fails on HTTP errors and on a GraphQL
# response that carries errors, as a newcomer reading its output would.
HELPERS = r"""
set -eo pipefail
curl() {
    local out status=0
    out=$(command curl --max-time 30 --fail-with-body "$@") || status=$?
    printf '%s\n' "$out"
    if [ "$status" -ne 0 ]; then
        echo "README test: curl failed with $status: curl $*" >&2
        return "$status"
    fi
    printf '%s' "$out" | "$README_TEST_PYTHON" -c '
import json, sys
try:
    body = json.loads(sys.stdin.read())
except ValueError:
    sys.exit(0)  # not a GraphQL response (metrics, headers, a health line)
if isinstance(body, dict) and body.get("errors"):
    sys.exit("README test: the GraphQL response carries errors")
'
}
"""


def _run_block(body: str, env: dict[str, str], state: Path) -> subprocess.CompletedProcess[str]:
    """One block in bash, with the variables earlier blocks exported; its own process
    group, so a block that overruns is stopped with everything it started."""
    script = f'{HELPERS}\n[ -f "{state}" ] && source "{state}"\n{body}\nexport -p > "{state}"\n'
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=BLOCK_WITHIN)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        stderr += f"\nREADME test: still running after {BLOCK_WITHIN} s (mark it not-tested?)"
        return subprocess.CompletedProcess(process.args, -9, stdout, stderr)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.timeout(900)  # a demo start and every block's own bound
def test_every_readme_shell_example_runs_against_the_demo(tmp_path: Path) -> None:
    runnable = [b for b in readme_blocks() if b.runs]
    with serving(tmp_path, command="demo") as demo:
        env = clean_env(
            MARK1_DATA_DIR=str(tmp_path / "data"),  # the demo's secret and database
            README_TEST_PYTHON=sys.executable,
        )
        # A reader's shell is no sub-make: under `make test` these would make `make token`
        # print "Entering directory" lines into $(make token).
        for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"):
            env.pop(name, None)
        for block in runnable:
            body = block.body.replace("127.0.0.1:8000", f"127.0.0.1:{demo.port}")
            run = _run_block(body, env, tmp_path / "state.sh")
            where = f"README.md line {block.line}:\n{block.body}\n--- stdout\n{run.stdout}"
            where += f"\n--- stderr\n{run.stderr}"
            assert run.returncode == 0, where
            assert "command not found" not in run.stderr, where
            assert "No such file or directory" not in run.stderr, where
            for line in (block.prints or "").splitlines():
                assert line.strip() in run.stdout + run.stderr, f"expected {line!r}\n{where}"


def test_blocks_left_out_are_few_and_say_why() -> None:
    found = readme_blocks()
    shells = [b for b in found if b.lang in SHELLS]
    left_out = [b for b in shells if b.not_tested is not None]

    assert len([b for b in shells if b.runs]) >= 6
    assert len(left_out) <= 4, [(b.line, b.not_tested) for b in left_out]
    for block in left_out:
        assert len(block.not_tested or "") >= 20, f"line {block.line}: say why it is not tested"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```bash\necho hi\n```\n", [("bash", None, None)]),
        ("<!-- not-tested: runs forever -->\n```sh\nyes\n```\n", [("sh", "runs forever", None)]),
        (
            "```bash\necho hi\n```\n\nprints\n\n```text\nhi\n```\n",
            [("bash", None, "hi"), ("text", None, None)],
        ),
        ("<!-- not-tested: x -->\ntext between\n```bash\nls\n```\n", [("bash", None, None)]),
    ],
)
def test_the_block_convention_is_read_as_documented(
    text: str, expected: list[tuple[str, str | None, str | None]]
) -> None:
    assert [(b.lang, b.not_tested, b.prints) for b in blocks(text)] == expected
