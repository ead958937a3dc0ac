"""The extraction page: texts pasted or uploaded, run in the background by the extract tool's
core, shown as they finish and downloaded as CSV. The model is the fake chat model."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chatbot.agent.tools.access import tools_ensure
from chatbot.agent.tools.extract_schemas import DEFAULT_SCHEMAS
from chatbot.chat.extraction import extraction_run_process, extraction_run_submit
from chatbot.chat.extraction_input import split_blocks
from chatbot.models import ExtractionRun, ModelEndpoint, ToolSetting

FIELDS = {
    "customer_name": "Maria Lopez",
    "email": "maria@example.com",
    "product": "export",
    "sentiment": "negative",
    "wants_refund": True,
    "summary": "The CSV export keeps failing.",
}
TWO_TEXTS = "Maria here, the export fails, refund please.\n---\nTom: love the mobile app!"
URL = "/chat/extract/"


def _tool(roles: list[str] | None = None, enabled: bool = True) -> None:
    tools_ensure()
    ToolSetting.objects.filter(name="extract").update(
        enabled=enabled, roles=roles if roles is not None else ["agent", "reviewer", "admin"]
    )


def _model(fake_endpoint, choices: list[str]) -> ModelEndpoint:
    endpoint = fake_endpoint(["unused"])
    endpoint.options["choices"] = choices
    endpoint.save()
    return endpoint


def _submit(client: Client, **data: Any):
    return client.post(URL, {"schema": "contact_request", **data})


def _run_for(user: User, texts: list[str], results: list[dict] | None = None) -> ExtractionRun:
    run, _ = extraction_run_submit(
        owner=user,
        schema_name="contact_request",
        entry=DEFAULT_SCHEMAS["contact_request"],
        texts=texts,
    )
    if results is not None:
        run.results = results
        run.done = len(results)
        run.status = ExtractionRun.Status.DONE
        run.save()
    return run


# --- who may use it -------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_nora_on_every_extraction_view(
    nora: User, alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    run = _run_for(alice, ["a text"])
    client = client_as(nora)

    assert client.get(URL).status_code == 403
    assert _submit(client, texts="a text").status_code == 403
    assert client.get(reverse("chat:extract_run", args=[run.pk])).status_code == 403
    assert client.get(reverse("chat:extract_csv", args=[run.pk])).status_code == 403
    assert ExtractionRun.objects.count() == 1


@pytest.mark.django_db
def test_it_tells_a_role_without_the_tool_what_to_do(
    alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool(roles=["admin"])
    client = client_as(alice)

    page = client.get(URL)
    refused = _submit(client, texts=TWO_TEXTS)

    assert page.status_code == 200
    assert "Extraction is not turned on for your role" in page.content.decode()
    assert 'name="texts"' not in page.content.decode()
    assert refused.status_code == 403 and not ExtractionRun.objects.exists()


@pytest.mark.django_db
def test_it_refuses_when_the_tool_is_off(alice: User, client_as: Callable[[User], Client]) -> None:
    _tool(enabled=False)

    response = _submit(client_as(alice), texts=TWO_TEXTS)

    assert response.status_code == 403
    assert "Console → Agent tools" in response.content.decode()


@pytest.mark.django_db
def test_it_shows_the_form_with_the_admins_schemas(
    rita: User, client_as: Callable[[User], Client]
) -> None:
    _tool()

    page = client_as(rita).get(URL)

    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="contact_request"' in html and "No runs yet" in html


# --- input checks -----------------------------------------------------------------------------


def _upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"file": _upload("big.txt", b"x" * (1024 * 1024 + 1))}, "too large; the limit is 1 MB"),
        ({"file": _upload("notes.pdf", b"%PDF-1.4")}, "be read here; use .txt, .csv"),
        ({"file": _upload("empty.txt", b"")}, "The submitted file is empty."),
        ({"file": _upload("zeros.txt", b"\x00\x01")}, "looks binary, not text"),
        ({"texts": "\n---\n  \n"}, "There are no texts"),
        ({"texts": "\n---\n".join(f"text {n}" for n in range(51))}, "That is 51 texts"),
        ({"texts": "a", "file": _upload("a.txt", b"b")}, "Paste texts or upload a file"),
        ({"file": _upload("t.jsonl", b'{"text": "ok"}\n{"body": "x"}\n')}, "Line 2 of the file"),
        ({"file": _upload("t.csv", b"id,body\n1,x\n"), "column": "msg"}, "no column “msg”"),
        ({"texts": "x" * 20_001}, "Text 1 is longer than 20,000 characters"),
    ],
    ids=[
        "too-big",
        "wrong-type",
        "empty",
        "binary",
        "no-texts",
        "too-many",
        "both",
        "jsonl-no-text",
        "csv-no-column",
        "too-long",
    ],
)
def test_it_refuses_bad_input_in_words(
    alice: User, client_as: Callable[[User], Client], data: dict, message: str
) -> None:
    _tool()

    response = _submit(client_as(alice), **data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ExtractionRun.objects.exists()


def test_it_splits_pasted_texts_on_lines_of_three_dashes() -> None:
    assert split_blocks("one\r\n---\r\ntwo -- not a split\n  ---  \n\n---\nthree") == [
        "one",
        "two -- not a split",
        "three",
    ]


@pytest.mark.django_db
def test_it_reads_a_csv_column_and_a_jsonl_file(
    alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    client = client_as(alice)

    by_name = _submit(client, file=_upload("t.csv", b"id,body\n1,first\n2,second\n3,\n"))
    chosen = _submit(client, file=_upload("u.csv", b"a,b\nx,one\ny,two\n"), column="b")
    jsonl = _submit(client, file=_upload("v.jsonl", b'{"text": "j1"}\n\n{"text": "j2"}\n'))

    assert {by_name.status_code, chosen.status_code, jsonl.status_code} == {302}
    runs = list(ExtractionRun.objects.order_by("pk"))
    assert [r.texts for r in runs] == [["first", "second"], ["one", "two"], ["j1", "j2"]]
    assert runs[0].source_name == "t.csv" and runs[0].total == 2


# --- running ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_extracts_each_text_and_shows_the_results(
    alice: User, client_as: Callable[[User], Client], fake_endpoint
) -> None:
    _tool()
    _model(fake_endpoint, [json.dumps(FIELDS)])
    client = client_as(alice)

    response = _submit(client, texts=TWO_TEXTS)
    run = ExtractionRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/chat/extract/{run.pk}/"
    waiting = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 1s"' in waiting and "0 of 2 texts" in waiting

    extraction_run_process(run_id=run.pk)

    run.refresh_from_db()
    assert (run.status, run.done, run.failed, run.endpoint_name) == ("done", 2, 0, "fake-model")
    assert [r["fields"] for r in run.results] == [FIELDS, FIELDS]
    partial = client.get(f"/chat/extract/{run.pk}/", headers={"HX-Request": "true"})
    html = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in html
    assert "every 1s" not in html, "a finished run stops polling"
    assert "2 of 2 texts" in html and "Maria Lopez" in html and "Download CSV" in html


@pytest.mark.django_db
def test_it_records_a_text_that_does_not_fit_in_words_and_goes_on(
    alice: User, fake_endpoint
) -> None:
    _tool()
    _model(fake_endpoint, ["<b>not json</b>"])
    run = _run_for(alice, ["one text", "another"])

    extraction_run_process(run_id=run.pk)
    extraction_run_process(run_id=run.pk)  # a second delivery changes nothing

    run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("done", 2, 2)
    assert run.results[0]["error"].startswith("The model's output did not fit the schema twice")


@pytest.mark.django_db
def test_it_carries_on_from_the_first_text_not_done(alice: User, fake_endpoint) -> None:
    _tool()
    _model(fake_endpoint, [json.dumps(FIELDS)])
    run = _run_for(alice, ["one", "two", "three"])
    kept = {"fields": dict(FIELDS, customer_name="Kept"), "error": "", "attempts": 1}
    ExtractionRun.objects.filter(pk=run.pk).update(status="running", results=[kept], done=1)

    extraction_run_process(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "done" and run.done == 3
    assert [r["fields"]["customer_name"] for r in run.results] == [
        "Kept",
        "Maria Lopez",
        "Maria Lopez",
    ]


@pytest.mark.django_db
def test_it_fails_the_run_with_the_reason_when_no_model_answers(
    alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    ModelEndpoint.objects.update(enabled=False)
    run = _run_for(alice, ["one"])

    extraction_run_process(run_id=run.pk)

    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("No model is available")
    page = client_as(alice).get(f"/chat/extract/{run.pk}/").content.decode()
    assert "The run failed:" in page and "No model is available" in page


@pytest.mark.django_db(transaction=True)
def test_it_runs_the_batch_in_the_celery_worker(
    alice: User, client_as: Callable[[User], Client], fake_endpoint, worker
) -> None:
    _tool()
    _model(fake_endpoint, [json.dumps(FIELDS)])

    response = _submit(client_as(alice), texts=TWO_TEXTS)

    assert response.status_code == 302
    run = ExtractionRun.objects.get()
    deadline = time.monotonic() + 30
    while run.status != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
        run.refresh_from_db()
    assert (run.status, run.done, run.failed) == ("done", 2, 0)


# --- owner, idempotency, CSV ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_a_run_to_its_owner(
    alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    run = _run_for(alice, ["a text"], results=[{"fields": FIELDS, "error": "", "attempts": 1}])
    client = client_as(rita)

    assert client.get(f"/chat/extract/{run.pk}/").status_code == 404
    assert client.get(f"/chat/extract/{run.pk}/csv/").status_code == 404
    assert f"#{run.pk}" not in client.get(URL).content.decode()
    assert client_as(alice).get(f"/chat/extract/{run.pk}/csv/").status_code == 200


@pytest.mark.django_db
def test_it_returns_the_same_run_for_the_same_texts_sent_again(
    alice: User, rita: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    client = client_as(alice)

    first = _submit(client, texts=TWO_TEXTS)
    again = _submit(client, texts=TWO_TEXTS)
    other = _submit(client, texts=TWO_TEXTS + "\n---\na third")
    someone_else = _submit(client_as(rita), texts=TWO_TEXTS)

    assert first["Location"] == again["Location"]
    assert len({first["Location"], other["Location"], someone_else["Location"]}) == 3
    assert ExtractionRun.objects.count() == 3


@pytest.mark.django_db
def test_it_writes_a_csv_escaped_against_formulas(
    alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    hostile = dict(FIELDS, customer_name='=HYPERLINK("http://x")', email="@SUM(A1)", summary="-2+3")
    run = _run_for(
        alice,
        ['+1 555 text, with "quotes"\nand lines ' + "y" * 300, "second"],
        results=[
            {"fields": hostile, "error": "", "attempts": 1},
            {
                "fields": None,
                "error": "The model's output did not fit the schema twice: x.",
                "attempts": 0,
            },
        ],
    )

    response = client_as(alice).get(f"/chat/extract/{run.pk}/csv/")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="extraction-{run.pk}-contact_request.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == [*FIELDS, "text", "error"]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["customer_name"] == '\'=HYPERLINK("http://x")'
    assert first["email"] == "'@SUM(A1)" and first["summary"] == "'-2+3"
    assert first["wants_refund"] == "true" and first["product"] == "export"
    assert first["text"].startswith("'+1 555 text") and len(first["text"]) == 201
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["customer_name"] == "" and second["error"].startswith("The model's output")


@pytest.mark.django_db
def test_it_escapes_model_output_on_the_page(
    alice: User, client_as: Callable[[User], Client]
) -> None:
    _tool()
    run = _run_for(
        alice,
        ["<script>alert(1)</script>"],
        results=[{"fields": dict(FIELDS, summary="<img src=x onerror=alert(1)>"), "error": ""}],
    )

    html = client_as(alice).get(f"/chat/extract/{run.pk}/").content.decode()

    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(1)" not in html


@pytest.mark.django_db
def test_it_polls_a_run_in_few_queries(
    alice: User, client_as: Callable[[User], Client], django_assert_num_queries
) -> None:
    _tool()
    run = _run_for(alice, ["one", "two"])
    client = client_as(alice)

    # session, user, the permission read (one statement: chatbot.accounts.backends), the run
    with django_assert_num_queries(4):
        response = client.get(f"/chat/extract/{run.pk}/", headers={"HX-Request": "true"})

    assert response.status_code == 200
