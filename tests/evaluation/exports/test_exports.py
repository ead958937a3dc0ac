"""Training exports: formats validated line by line, personal data scrubbed, duplicates dropped,
provenance kept, progress recorded. Real Postgres; the file is read back and parsed."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from chatbot.compliance.pii import Scrubber
from chatbot.models import Export, Turn
from evaluation.exports import services
from tests.evaluation.exports.support import (
    assert_dpo_row,
    assert_sft_row,
    rated,
    read_jsonl,
    review,
    run_export,
)
from tests.evaluation.judging import (
    ADMINS_ONLY_PASSAGE,
    PASSWORD_CHUNK,
    admins_only_turn,
    finished_turn,
)

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe@example.com"
PHONE = "+1 212-555-0143"


def test_it_writes_fine_tuning_rows_in_the_chat_messages_format(alice: User, rita: User) -> None:
    grounded = finished_turn(
        alice,
        question="How do I reset a forgotten password?",
        answer="Click Forgot password on the sign-in page [1].",
        context=(PASSWORD_CHUNK,),
    )
    approved = review(grounded, rita, approved=True)
    wrong = finished_turn(alice, question="Who approves leave?", answer="Nobody does.")
    corrected = review(wrong, rita, grade=1, corrected="Your line manager approves leave.")
    graded_only = finished_turn(alice, question="Is the VPN down?", answer="No.")
    review(graded_only, rita, grade=3)

    export, rows = run_export(Export.Kind.SFT)

    assert len(rows) == 2 == export.rows_written == export.rows_total
    for row in rows:
        assert_sft_row(row)
    by_turn = {row["metadata"]["turn_id"]: row for row in rows}
    assert set(by_turn) == {grounded.pk, wrong.pk}
    first = by_turn[grounded.pk]
    assert first["metadata"]["export_id"] == export.pk
    assert first["metadata"]["review_id"] == approved.pk
    assert first["metadata"]["source"] == "approved"
    assert first["messages"][2]["content"] == grounded.answer
    # The answer cites [1]: the source it cites travels with it, as the live prompt carries it
    # (data before the question in the user message, not in the system message).
    user = first["messages"][1]["content"]
    assert user.startswith("<sources>\n[1] doc-0\nTo reset a forgotten password")
    assert user.endswith(f"</sources>\n\n{grounded.user_text}")
    assert "To reset" not in first["messages"][0]["content"]
    second = by_turn[wrong.pk]
    assert second["metadata"]["source"] == "corrected"
    assert second["metadata"]["review_id"] == corrected.pk
    assert second["messages"][1]["content"] == wrong.user_text
    assert second["messages"][2]["content"] == "Your line manager approves leave."
    assert "<sources>" not in second["messages"][0]["content"]
    assert export.path == f"sft-{export.pk:06d}.jsonl"


def test_it_scrubs_personal_data_and_counts_what_it_replaced(alice: User, rita: User) -> None:
    turn = finished_turn(
        alice,
        question=f"My address is {EMAIL}, can you reset my token?",
        answer=f"Call the service desk on {PHONE} or write to {EMAIL}.",
    )
    review(turn, rita, approved=True)

    export, rows = run_export(Export.Kind.SFT)

    text = Path(services.exports_dir() / export.path).read_text()
    assert EMAIL not in text and PHONE not in text
    (row,) = rows
    assert row["messages"][1]["content"] == (
        "My address is <EMAIL_ADDRESS>, can you reset my token?"
    )
    assert row["messages"][2]["content"] == (
        "Call the service desk on <PHONE_NUMBER> or write to <EMAIL_ADDRESS>."
    )
    assert export.pii_redacted == 3


def test_it_keeps_the_longest_of_overlapping_findings() -> None:
    scrub = Scrubber()

    assert scrub("Card 4111 1111 1111 1111 expired.") == "Card <CREDIT_CARD> expired."
    assert scrub("Server 10.0.0.1, build 2.4.1, ticket 12345.") == (
        "Server 10.0.0.1, build 2.4.1, ticket 12345."
    )
    assert scrub.redacted == 1


def test_it_drops_duplicates_after_normalising_case_spacing_and_punctuation(
    alice: User, rita: User
) -> None:
    one = finished_turn(alice, question="How do I reset my password?", answer="Click Forgot.")
    two = finished_turn(alice, question="how do I  reset my password", answer="click forgot!")
    review(one, rita, approved=True)
    review(two, rita, approved=True)
    # Two reviewers approving the same turn (double review) would also give the row twice.
    review(one, User.objects.get(username="adam"), approved=True)

    export, rows = run_export(Export.Kind.SFT)

    assert len(rows) == 1 and export.rows_written == 1
    assert export.duplicates_dropped == 2
    assert export.rows_total == export.rows_done == 3


def test_it_prefers_a_correction_to_another_reviewers_approval(
    alice: User, rita: User, adam: User
) -> None:
    turn = finished_turn(alice, question="Who approves leave?", answer="HR does.")
    review(turn, rita, approved=True)
    fix = review(turn, adam, grade=2, corrected="Your line manager approves leave.")

    _, rows = run_export(Export.Kind.SFT)

    (row,) = rows
    assert row["metadata"]["review_id"] == fix.pk
    assert row["messages"][2]["content"] == "Your line manager approves leave."


def test_it_writes_preference_pairs_from_corrections_and_thumbs(alice: User, rita: User) -> None:
    question = "How do I connect to the VPN?"
    wrong = finished_turn(alice, question="Who approves leave?", answer="Nobody does.")
    fix = review(wrong, rita, grade=1, corrected="Your line manager approves leave.")
    liked = rated(alice, 1, question=question, answer="Open the VPN client and sign in.")
    disliked = rated(alice, -1, question=question + " ", answer="Ask someone else.")
    # A disliked answer with no liked one to the same question makes no pair.
    rated(alice, -1, question="Where is the canteen?", answer="No idea.")

    export, rows = run_export(Export.Kind.DPO)

    for row in rows:
        assert_dpo_row(row)
    by_source = {row["metadata"]["source"]: row for row in rows}
    assert len(rows) == 2 == export.rows_written
    correction = by_source["correction"]
    assert correction["prompt"] == "Who approves leave?"
    assert correction["chosen"] == "Your line manager approves leave."
    assert correction["rejected"] == "Nobody does."
    assert correction["metadata"]["review_id"] == fix.pk
    assert correction["metadata"]["chosen_turn_id"] == wrong.pk
    thumbs = by_source["thumbs"]
    assert thumbs["chosen"] == liked.answer and thumbs["rejected"] == disliked.answer
    assert thumbs["metadata"]["chosen_turn_id"] == liked.pk
    assert thumbs["metadata"]["rejected_turn_id"] == disliked.pk


def test_it_pairs_a_disliked_answer_with_a_correction_to_the_same_question(
    alice: User, rita: User
) -> None:
    question = "Who approves leave?"
    corrected = finished_turn(alice, question=question, answer="Nobody does.")
    fix = review(corrected, rita, grade=1, corrected="Your line manager approves leave.")
    disliked = rated(alice, -1, question=question, answer="HR, probably.")

    _, rows = run_export(Export.Kind.DPO)

    thumbs = [row for row in rows if row["metadata"]["source"] == "thumbs"]
    assert len(rows) == 2 and len(thumbs) == 1
    assert thumbs[0]["chosen"] == "Your line manager approves leave."
    assert thumbs[0]["rejected"] == "HR, probably."
    assert thumbs[0]["metadata"]["review_id"] == fix.pk
    assert thumbs[0]["metadata"]["rejected_turn_id"] == disliked.pk


def test_it_exports_only_turns_in_the_date_range(alice: User, rita: User) -> None:
    old = finished_turn(alice, question="Old question?", answer="Old answer.")
    new = finished_turn(alice, question="New question?", answer="New answer.")
    review(old, rita, approved=True)
    review(new, rita, approved=True)
    Turn.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    since = (timezone.now() - timedelta(days=7)).date()

    export, rows = run_export(Export.Kind.SFT, date_from=since)

    assert [row["metadata"]["turn_id"] for row in rows] == [new.pk]
    assert export.params == {
        "date_from": since.isoformat(),
        "date_to": None,
        # What the run found, kept beside the filters: nothing was left out, no passages.
        "rows_left_out_unshared": 0,
        "collections": [],
    }


def test_it_refuses_a_bad_kind_or_date_range(alice: User) -> None:
    with pytest.raises(services.InvalidExport, match="Unknown export kind"):
        services.export_create(kind="csv", queue=False)
    with pytest.raises(services.InvalidExport, match="start date is after the end date"):
        services.export_create(
            kind="sft", date_from="2025-02-01", date_to="2025-01-01", queue=False
        )
    with pytest.raises(services.InvalidExport, match="must look like"):
        services.export_create(kind="sft", date_from="last week", queue=False)


def test_it_records_progress_then_a_done_state(
    alice: User, rita: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(5):
        review(finished_turn(alice, question=f"Question {n}?", answer=f"Answer {n}."), rita,
               approved=True)  # fmt: skip
    export = services.export_create(kind=Export.Kind.SFT, queue=False)
    assert export.status == Export.Status.QUEUED and export.percent == 0
    monkeypatch.setattr(services, "PROGRESS_EVERY_S", 0)
    seen: list[tuple[str, int, int]] = []

    def progress(current: Export) -> None:
        stored = Export.objects.get(pk=current.pk)
        seen.append((stored.status, stored.rows_done, stored.rows_total))

    services.export_run(export_id=export.pk, on_progress=progress)

    assert seen[:5] == [("running", n, 5) for n in range(1, 6)]
    assert seen[-1] == ("done", 5, 5)
    export.refresh_from_db()
    assert export.percent == 100 and export.finished_at is not None and not export.error


def test_it_is_safe_to_run_twice(alice: User, rita: User) -> None:
    review(finished_turn(alice), rita, approved=True)
    export, rows = run_export(Export.Kind.SFT)
    finished_at = export.finished_at

    services.export_run(export_id=export.pk)

    export.refresh_from_db()
    assert export.finished_at == finished_at
    path = services.export_file(export)
    assert path is not None and read_jsonl(path) == rows
    assert not list(path.parent.glob(".*.part"))


def test_it_records_a_failure_with_its_reason(alice: User, settings: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    settings.EXPORTS_DIR = blocker / "exports"
    export = services.export_create(kind=Export.Kind.SFT, queue=False)

    services.export_run(export_id=export.pk)

    export.refresh_from_db()
    assert export.status == Export.Status.FAILED
    assert export.error.startswith("The export failed (")
    assert export.finished_at is not None


def test_it_queues_the_export_only_after_the_transaction_commits(
    alice: User, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.export_create(kind=Export.Kind.DPO, user=alice)

    assert len(callbacks) == 1


def test_it_writes_an_export_from_the_command_line(alice: User, rita: User, tmp_path: Path) -> None:
    review(finished_turn(alice), rita, approved=True)
    out = tmp_path / "train.jsonl"

    printed = StringIO()

    call_command("export_training", "--kind", "sft", "--out", str(out), stdout=printed)

    (row,) = read_jsonl(out)
    assert_sft_row(row)
    assert f"1 rows to {out}" in printed.getvalue()


def test_it_leaves_out_rows_citing_passages_the_exporter_may_not_read(
    alice: User, rita: User, adam: User
) -> None:
    secret = admins_only_turn(adam)
    review(secret, adam, approved=True)
    shared = finished_turn(alice, answer="Click Forgot password [1].", context=(PASSWORD_CHUNK,))
    review(shared, rita, approved=True)

    by_rita, rows = run_export(Export.Kind.SFT, user=rita)

    text = Path(services.exports_dir() / by_rita.path).read_text()
    assert "Project Bluebird" not in text and "Lisbon" not in text
    assert [row["metadata"]["turn_id"] for row in rows] == [shared.pk]
    assert by_rita.params["rows_left_out_unshared"] == 1
    by_adam, rows = run_export(Export.Kind.SFT, user=adam)
    assert {row["metadata"]["turn_id"] for row in rows} == {secret.pk, shared.pk}
    assert ADMINS_ONLY_PASSAGE in Path(services.exports_dir() / by_adam.path).read_text()
    assert by_adam.params["rows_left_out_unshared"] == 0
