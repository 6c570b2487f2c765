"""The README's local examples, run as written against `make run`'s stack (the local_stack fixture).

Every Python block without a placeholder (``<api-id>``, ``<region>``: those are for a deployed
stack) runs, in order, in one namespace (later blocks use names the earlier ones define); shell
blocks that publish to the embedded AWS run in bash. Only the addresses and the data folder are
swapped for the test stack's.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess

from tests.conftest import LocalStack
from tests.utils import ROOT

BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def readme_blocks(language: str, marker: str = "") -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    return [
        body
        for lang, body in BLOCK.findall(text)
        if lang == language and marker in body and not re.search(r"<(api-id|region|account|version)>", body)
    ]


def test_python_examples_run(local_stack: LocalStack) -> None:
    # Given every Python example of the README written for the local runtime
    blocks = readme_blocks("python")
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for block in blocks:
        code = block.replace("http://127.0.0.1:3000", local_stack.api_url)
        code = code.replace("http://127.0.0.1:5050", local_stack.aws_url)
        code = code.replace(".local/demo", str(local_stack.data_dir))
        # When it runs as written, Then it raises nothing (botocore raises on any error answer)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), namespace)
    # And the examples did what they say: a filter exists, answers came back with metadata
    assert str(namespace["filter_arn"]).endswith(":filter/unwatched-in-genre")
    answer = namespace["answer"]
    assert isinstance(answer, dict)
    assert set(answer["itemList"][0]["metadata"]) == {"GENRES", "TITLE"}
    # And the batch job against make run ran to the end
    job = namespace["batch_job"]
    assert isinstance(job, dict)
    assert job["status"] == "ACTIVE", job
    # And the training walk-through trained a version, served it by campaign and by recommender
    assert namespace["trained"]["status"] == "ACTIVE"  # type: ignore[index]
    assert set(namespace["metrics"]) >= {"precision_at_10", "coverage"}  # type: ignore[arg-type]
    assert len(namespace["picks"]["itemList"]) == 5  # type: ignore[index]


def test_shell_publish_example_runs(local_stack: LocalStack) -> None:
    # Given the README's example that publishes into the running local stack
    blocks = readme_blocks("bash", "--endpoint-url http://127.0.0.1:5050")
    assert blocks
    for block in blocks:
        script = block.replace("http://127.0.0.1:5050", local_stack.aws_url).replace(
            ".local/demo", str(local_stack.data_dir)
        )
        script = script.replace(".venv/bin/", str(ROOT / ".venv" / "bin") + "/")
        # When it runs, Then it succeeds and prints the new campaign
        done = subprocess.run(
            ["bash", "-c", script], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "campaignArn" in done.stdout
