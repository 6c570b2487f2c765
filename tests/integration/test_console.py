"""The console page in a real headless browser (Debian's chromium, `make chromium`), on the local runtime."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import LocalStack
from tests.utils import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"  # ignored by git; screenshots of the last run


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # launch() gives the browser a fresh temporary profile (its own --user-data-dir) every time.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, local_stack: LocalStack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.goto(f"{local_stack.api_url}/console")
    yield opened
    context.close()


def result_rows(page: Page) -> list[list[str]]:
    """The results' cells, without the Record button column (shown when the group has a tracker)."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "#results tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    return [row[:-1] if "Event" in result_headers(page) else row for row in rows]


def result_headers(page: Page) -> list[str]:
    headers: list[str] = page.eval_on_selector_all(
        "#results thead th", "cells => cells.map(c => c.textContent)"
    )
    return headers


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_recommendations_for_a_user_in_the_console(page: Page, local_stack: LocalStack) -> None:
    # Given the console, with the demo campaigns offered
    page.wait_for_function("document.querySelectorAll('#campaign option').length >= 4")
    page.select_option("#campaign", label="demo-user-personalization (USER_PERSONALIZATION)")
    # When a user's recommendations are asked for
    page.fill("#userId", "user-3")
    page.fill("#numResults", "8")
    page.click("#submit")
    page.wait_for_selector("#results tbody tr")
    # Then the table shows the ranked items with their scores, highest first, as the API answers
    rows = result_rows(page)
    assert len(rows) == 8
    assert [row[0] for row in rows] == [str(i) for i in range(1, 9)]
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(row[1].startswith("item-") for row in rows)
    assert "recommendationId: RID-" in page.inner_text("#recommendation-id")
    assert "solution/demo-user-personalization/" in page.inner_text("#solution-version")
    # And the batch jobs panel says plainly that this stack has no batch jobs yet (or lists them)
    page.wait_for_function(
        "(s => s.length > 0 && !s.startsWith('Loading'))(document.querySelector('#jobs-status').textContent)"
    )
    status = page.inner_text("#jobs-status")
    assert "UnknownOperationException" in status or "job" in status.lower()
    assert screenshot(page, "console-user-personalization").stat().st_size > 10_000


def test_ranking_and_errors_in_the_console(page: Page) -> None:
    # Given the ranking campaign: the page asks for a list of items instead of a count
    page.wait_for_function("document.querySelectorAll('#campaign option').length >= 4")
    page.select_option("#campaign", label="demo-personalized-ranking (PERSONALIZED_RANKING)")
    assert page.is_visible("#inputList")
    assert not page.is_visible("#numResults")
    # When a list is ranked
    page.fill("#inputList", "item-10, item-42\nitem-7, not-in-catalog")
    page.click("#submit")
    page.wait_for_selector("#results tbody tr")
    rows = result_rows(page)
    # Then every listed item comes back once, the unknown one last without a score
    assert sorted(row[1] for row in rows) == ["item-10", "item-42", "item-7", "not-in-catalog"]
    assert rows[-1][1:3] == ["not-in-catalog", "0.000"]  # an item the model does not know scores 0
    # When the API refuses a request, Then the page shows Personalize's error code and message
    page.select_option("#campaign", label="demo-user-personalization (USER_PERSONALIZATION)")
    page.fill("#numResults", "501")
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0")
    error: Any = page.inner_text("#error")
    assert error.startswith("InvalidInputException:")
    assert "numResults" in error
    assert not page.is_visible("#results")


def test_filter_metadata_and_batch_jobs_in_the_console(page: Page, local_stack: LocalStack) -> None:
    # Given a filter on the demo catalog's GENRES, made through the control plane
    personalize = local_stack.client("personalize")
    group = "arn:aws:personalize:us-east-1:123456789012:dataset-group/demo"  # the demo's, trained
    filter_arn = personalize.create_filter(
        name=f"genres-{uuid.uuid4().hex[:6]}",
        datasetGroupArn=group,
        filterExpression="INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)",
    )["filterArn"]
    # When a user's recommendations are asked for with it, its values and two metadata columns
    page.wait_for_function("document.querySelectorAll('#campaign option').length >= 4")
    page.select_option("#campaign", label="demo-user-personalization (USER_PERSONALIZATION)")
    page.fill("#userId", "user-3")
    page.fill("#numResults", "6")
    page.fill("#filterArn", filter_arn)
    page.fill("#filterValues", 'GENRES="comedy"')
    page.fill("#metadataColumns", "TITLE,GENRES")
    page.click("#submit")
    page.wait_for_selector("#results tbody tr")
    # Then every row is a comedy, with its title and genres shown
    headers = [h for h in result_headers(page) if h != "Event"]
    assert [h.upper() for h in headers[-2:]] == ["TITLE", "GENRES"]
    rows = result_rows(page)
    assert len(rows) == 6
    assert all("comedy" in row[-1].split("|") and row[-2] for row in rows)
    screenshot(page, "console-filter-metadata")

    # Given a batch inference job created with boto3 on the same stack
    s3 = local_stack.client("s3")
    bucket = f"batch-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in.jsonl", Body=b'{"userId": "user-3"}\n{"userId": "user-4"}\n')
    version = personalize.describe_campaign(
        campaignArn="arn:aws:personalize:us-east-1:123456789012:campaign/demo-user-personalization"
    )["campaign"]["solutionVersionArn"]
    name = f"console-{uuid.uuid4().hex[:6]}"
    personalize.create_batch_inference_job(
        jobName=name,
        solutionVersionArn=version,
        roleArn="arn:aws:iam::123456789012:role/personalize-batch-console",
        jobInput={"s3DataSource": {"path": f"s3://{bucket}/in.jsonl"}},
        jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/out/"}},
    )
    # When the jobs panel is refreshed until the local worker has run it
    for _ in range(60):
        page.click("#refresh-jobs")
        page.wait_for_timeout(250)
        jobs = page.eval_on_selector_all(
            "#jobs tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        if any(row[0] == name and row[1] == "ACTIVE" for row in jobs):
            break
    # Then it is listed as ACTIVE, and its output is there
    assert [row[1] for row in jobs if row[0] == name] == ["ACTIVE"]
    out = s3.get_object(Bucket=bucket, Key="out/in.jsonl.out")["Body"].read().decode().splitlines()
    assert len(out) == 2
    screenshot(page, "console-batch-jobs")


#: The recent events table lists an item (its third cell).
LISTED = "id => [...document.querySelectorAll('#recent tbody tr')].some(r => r.cells[2].textContent == id)"


def test_events_recorded_in_the_console_change_the_recommendations(page: Page) -> None:
    # Given an anonymous visitor's recommendations on the demo campaign (its group has a tracker)
    page.wait_for_function("document.querySelectorAll('#campaign option').length >= 4")
    page.select_option("#campaign", label="demo-user-personalization (USER_PERSONALIZATION)")
    visitor = f"console-visitor-{uuid.uuid4().hex[:6]}"
    page.fill("#userId", visitor)
    page.check("#anonymous")
    page.fill("#numResults", "8")
    page.click("#submit")
    page.wait_for_selector("#results tbody tr button.record")
    assert page.inner_text("#tracker").startswith("trackingId ")
    first = result_rows(page)
    # When the visitor records events on two of the items shown
    clicked = []
    for row in (2, 5):
        clicked.append(result_rows(page)[row][1])
        page.click(f"#results tbody tr:nth-child({row + 1}) button.record")
        page.wait_for_function(LISTED, arg=clicked[-1])
    # Then their recent events are listed, newest first, and the recommendations changed
    recent = page.eval_on_selector_all(
        "#recent tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[1] for row in recent] == ["watch", "watch"]
    assert [row[2] for row in recent] == clicked[::-1]
    page.wait_for_function("document.querySelector('#recent-status').textContent.startsWith('Recent events')")
    assert [row[1] for row in result_rows(page)] != [row[1] for row in first]
    screenshot(page, "console-events")
