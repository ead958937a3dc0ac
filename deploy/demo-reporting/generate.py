"""Write tickets.csv: the labelled demo tickets behind the `sql` and `classify` tools.

Run `python deploy/demo-reporting/generate.py` (stdlib only). The seed is fixed, so the file is
byte-for-byte reproducible and the trained demo classifiers and SQL answers stay stable.

Intent and priority are learnable from the wording but not trivially: about one ticket in twelve
carries a label its text only half supports, as real triage does, and most tickets carry no
priority cue at all, so priority is the harder task.
"""

from __future__ import annotations

import csv
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20260301
ROWS = 400
OUT = Path(__file__).with_name("tickets.csv")
COLUMNS = [
    "id",
    "subject",
    "body",
    "status",
    "priority",
    "product",
    "intent",
    "created_at",
    "closed_at",
]

PRODUCTS = ["billing", "login", "export", "shipping", "integrations", "mobile"]
PRIORITIES = ["low", "normal", "high", "urgent"]

# Which products a ticket of each intent is usually filed against.
INTENT_PRODUCTS = {
    "billing_question": ["billing"] * 6 + ["shipping", "integrations"],
    "refund_request": ["billing"] * 5 + ["shipping"] * 2 + ["mobile"],
    "bug_report": ["export", "mobile", "integrations", "login", "shipping"],
    "account_access": ["login"] * 5 + ["mobile"] * 2,
    "feature_request": ["export", "integrations", "mobile", "shipping", "billing"],
    "how_to": ["export", "integrations", "shipping", "billing", "login", "mobile"],
}
INTENT_WEIGHTS = {
    "billing_question": 17,
    "refund_request": 13,
    "bug_report": 22,
    "account_access": 16,
    "feature_request": 12,
    "how_to": 20,
}
# Intents that get confused for one another when a ticket is labelled carelessly.
NEIGHBOURS = {
    "billing_question": ["refund_request", "how_to"],
    "refund_request": ["billing_question"],
    "bug_report": ["how_to", "account_access"],
    "account_access": ["bug_report", "how_to"],
    "feature_request": ["how_to", "bug_report"],
    "how_to": ["feature_request", "bug_report"],
}

SLOTS: dict[str, list[str]] = {
    "plan": [
        "Team plan",
        "Pro plan",
        "Starter plan",
        "Enterprise plan",
        "annual plan",
        "monthly plan",
    ],
    "month": ["January", "February", "March", "April", "May", "June", "last month", "this month"],
    "amount": ["$49", "$120", "$19.99", "$600", "EUR 89", "$1,200", "$75", "GBP 240"],
    "error": [
        "a 500 error",
        "a blank page",
        "'something went wrong'",
        "a timeout after 60 seconds",
        "error code E1042",
        "a spinner that never stops",
        "an empty file",
    ],
    "who": [
        "our finance team",
        "my manager",
        "a customer of ours",
        "our admin",
        "a new colleague",
        "the whole ops team",
    ],
    "since": [
        "since this morning",
        "since yesterday",
        "since the last update",
        "for two days",
        "since Monday",
    ],
}

FEATURES = {
    "billing": ["invoices", "the billing portal", "payment methods", "tax settings"],
    "login": ["single sign-on", "two-factor login", "password reset", "the login page"],
    "export": ["CSV export", "the PDF report export", "scheduled exports", "Excel export"],
    "shipping": ["shipping labels", "tracking updates", "the carrier sync", "return labels"],
    "integrations": ["the Slack integration", "the Salesforce sync", "webhooks", "the API"],
    "mobile": ["the iOS app", "the Android app", "push notifications", "the mobile dashboard"],
}

SUBJECTS = {
    "billing_question": [
        "Question about my invoice",
        "Why did my bill go up?",
        "Invoice for {month}",
        "Charge on {plan}",
        "VAT on our invoice",
        "Billing cycle question",
        "Unexpected amount on invoice",
        "Which card are you charging?",
        "Proration question",
    ],
    "refund_request": [
        "Refund please",
        "Charged twice",
        "Requesting a refund for {month}",
        "Cancelled but still charged",
        "Money back for {plan}",
        "Double charge on my card",
        "Refund for unused seats",
        "Please reverse this charge",
    ],
    "bug_report": [
        "{feature} is broken",
        "Error when using {feature}",
        "{feature} not working",
        "Bug: {error} in {feature}",
        "{feature} crashes",
        "Something wrong with {feature}",
        "{feature} stopped working {since}",
        "Broken {feature}",
    ],
    "account_access": [
        "Can't log in",
        "Locked out of my account",
        "Password reset link not arriving",
        "2FA code not accepted",
        "Login problem",
        "Account locked",
        "SSO login fails",
        "Lost access to my account",
    ],
    "feature_request": [
        "Feature request: {feature}",
        "Suggestion for {feature}",
        "Could you add this to {feature}?",
        "Idea: improve {feature}",
        "Would love an option in {feature}",
        "Request: more control over {feature}",
    ],
    "how_to": [
        "How do I set up {feature}?",
        "How to use {feature}",
        "Question about {feature}",
        "Where do I find {feature}?",
        "Help with {feature} settings",
        "Setting up {feature}",
        "Is it possible to configure {feature}?",
    ],
}

BODIES = {
    "billing_question": [
        "Our invoice for {month} shows {amount} but I expected less on the {plan}. Can you explain the line items?",
        "Could you tell me why we were billed {amount} this cycle? Nothing changed on our side.",
        "{who} is asking when the next charge for the {plan} happens and whether it includes tax.",
        "I need a copy of the invoice for {month} with our company address and VAT number on it.",
        "The invoice lists more seats than we use. How is the seat count calculated on the {plan}?",
        "We upgraded mid-month to the {plan}. How does the prorated amount of {amount} work?",
        "Which payment method is on file? {who} wants to move billing to a different card.",
        "Do you bill annually up front or monthly on the {plan}? The pricing page is not clear to me.",
    ],
    "refund_request": [
        "I was charged twice for the {plan} in {month}, {amount} each time. Please refund the duplicate.",
        "We cancelled before renewal but were still charged {amount}. I'd like a refund please.",
        "Please refund the {amount} charge from {month}, we never used the {plan} after the trial.",
        "My card shows two charges of {amount}. One of them should be refunded.",
        "We downgraded and want our money back for the unused seats on the {plan}.",
        "Can you reverse the {amount} payment? It was made by mistake by {who}.",
        "The renewal of the {plan} went through although we asked to cancel. Refund please.",
    ],
    "bug_report": [
        "When I open {feature} I get {error}. It worked fine before.",
        "{feature} shows {error} {since}. Steps: open it, click save, nothing happens.",
        "Every time {who} uses {feature} we see {error}. Looks like a bug on your side.",
        "{feature} is returning {error} {since}. We have tried another browser, same result.",
        "After the update {feature} crashes with {error}.",
        "Data in {feature} is wrong: numbers do not match what we entered, and sometimes {error}.",
        "{feature} fails silently, no data arrives and the log only shows {error}.",
    ],
    "account_access": [
        "I can't log in, it says my password is wrong although I just reset it.",
        "The password reset e-mail never arrives. Checked spam too. {who} is locked out as well.",
        "My account got locked after too many attempts {since}. Please unlock it.",
        "The 2FA code from my authenticator is rejected every time. I changed phones recently.",
        "SSO sends me back to the login page in a loop {since}.",
        "I no longer have access to the e-mail on my account and cannot sign in.",
        "{who} was removed as admin by mistake and now cannot get into the account.",
    ],
    "feature_request": [
        "It would be great if {feature} could filter by date range. Is this on the roadmap?",
        "Could you add an option to {feature} so we can choose the columns?",
        "We'd love to see dark mode in {feature}. {who} keeps asking for it.",
        "Please consider adding bulk actions to {feature}, doing it one by one takes ages.",
        "Suggestion: let {feature} send a summary e-mail every week.",
        "Would it be possible to support custom fields in {feature}? That would save us a lot of time.",
    ],
    "how_to": [
        "How do I set up {feature} for our team? I could not find it in the docs.",
        "Where in the settings can I change how {feature} works?",
        "Can you walk me through connecting {feature}? {who} wants to start using it.",
        "What is the right way to use {feature} with several accounts?",
        "Is there a guide for {feature}? I am new and not sure where to start.",
        "How can I give {who} permission to use {feature}?",
        "Is it possible to schedule {feature}, and if so where do I do that?",
    ],
}

# Phrases that raise (or lower) urgency. Only some tickets carry one, and the label follows the
# cue most but not all of the time.
PRIORITY_CUES = {
    "urgent": [
        "URGENT: ",
        "This is urgent, ",
        "Down for everyone here. ",
        "Production is down. ",
        "We are losing orders right now. ",
        "Critical: ",
    ],
    "high": [
        "Please fix asap. ",
        "We need this today. ",
        "Blocking our month-end close. ",
        "Several customers affected. ",
        "Need help soon. ",
    ],
    "low": [
        "No rush, ",
        "When you have time, ",
        "Not urgent, but ",
        "Just curious: ",
        "Whenever convenient, ",
    ],
}
BASE_PRIORITY = {
    "billing_question": [15, 65, 15, 5],
    "refund_request": [5, 55, 30, 10],
    "bug_report": [5, 40, 35, 20],
    "account_access": [3, 37, 40, 20],
    "feature_request": [50, 45, 5, 0],
    "how_to": [35, 55, 9, 1],
}

TYPOS = [
    ("the", "teh"),
    ("receive", "recieve"),
    ("password", "pasword"),
    ("invoice", "invocie"),
    ("login", "loign"),
]
SIGNOFFS = [
    "",
    "",
    " Thanks!",
    " Thanks, Sam",
    " Best regards",
    " Cheers",
    " Thank you in advance.",
]


def _fill(template: str, product: str, rng: random.Random) -> str:
    text = template.format(
        plan=rng.choice(SLOTS["plan"]),
        month=rng.choice(SLOTS["month"]),
        amount=rng.choice(SLOTS["amount"]),
        feature=rng.choice(FEATURES[product]),
        error=rng.choice(SLOTS["error"]),
        who=rng.choice(SLOTS["who"]),
        since=rng.choice(SLOTS["since"]),
    )
    # Slots such as "the whole ops team" can open a sentence.
    return re.sub(r"(^|[.?!] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


def _typo(text: str, rng: random.Random) -> str:
    if rng.random() < 0.12:
        right, wrong = rng.choice(TYPOS)
        text = text.replace(right, wrong, 1)
    if rng.random() < 0.15:
        text = text.lower()
    return text


def _priority(intent: str, rng: random.Random) -> tuple[str, str]:
    """Return the labelled priority and the cue (possibly empty) that goes in front of the body."""
    base = rng.choices(PRIORITIES, weights=BASE_PRIORITY[intent])[0]
    if rng.random() < 0.45:
        return base, ""
    cue_level = rng.choices(["urgent", "high", "low"], weights=[3, 3, 3])[0]
    cue = rng.choice(PRIORITY_CUES[cue_level])
    # Senders over- and under-state urgency; triage does not always agree with them.
    label = cue_level if rng.random() < 0.8 else base
    return label, cue


def _cue_into_body(cue: str, body: str) -> str:
    if not cue:
        return body
    if cue.rstrip().endswith((".", ":")):
        return cue + body
    # A cue like "No rush, " runs on into the sentence; "I" and acronyms keep their capitals.
    first = body.split(" ", 1)[0]
    if first != "I" and not first[:2].isupper():
        body = body[0].lower() + body[1:]
    return cue[0].upper() + cue[1:] + body


def _row(n: int, rng: random.Random, start: datetime) -> dict[str, str]:
    intent = rng.choices(list(INTENT_WEIGHTS), weights=list(INTENT_WEIGHTS.values()))[0]
    product = rng.choice(INTENT_PRODUCTS[intent])
    subject = _fill(rng.choice(SUBJECTS[intent]), product, rng)
    body = _fill(rng.choice(BODIES[intent]), product, rng)
    priority, cue = _priority(intent, rng)
    if cue and rng.random() < 0.3:
        subject = cue.split(",")[0].strip().rstrip(":.") + ": " + subject
    body = _typo(_cue_into_body(cue, body), rng) + rng.choice(SIGNOFFS)
    label = intent
    if rng.random() < 0.08:
        label = rng.choice(NEIGHBOURS[intent])

    created = start + timedelta(minutes=rng.randrange(0, 60 * 24 * 150))
    # Older tickets are more likely to be closed; open billing tickets stay in the mix on purpose.
    age_days = (start + timedelta(days=150) - created).days
    roll = rng.random()
    if roll < min(0.85, 0.25 + age_days / 160):
        status = "closed"
    elif roll < min(0.93, 0.45 + age_days / 160):
        status = "pending"
    else:
        status = "open"
    closed = ""
    if status == "closed":
        hours = {"urgent": 6, "high": 24, "normal": 72, "low": 168}[priority]
        closed_at = created + timedelta(minutes=rng.randrange(20, hours * 60 * 2))
        closed = closed_at.isoformat(timespec="seconds") + "Z"
    return {
        "id": f"T-{2000 + n}",
        "subject": subject,
        "body": body,
        "status": status,
        "priority": priority,
        "product": product,
        "intent": label,
        "created_at": created.isoformat(timespec="seconds") + "Z",
        "closed_at": closed,
    }


def generate(rows: int = ROWS, seed: int = SEED) -> list[dict[str, str]]:
    # Reproducible demo data, not a secret: a seeded generator is what is wanted.
    rng = random.Random(seed)  # noqa: S311
    start = datetime(2026, 1, 5, 8, 0, 0)
    return [_row(n, rng, start) for n in range(1, rows + 1)]


def main() -> None:
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(generate())
    print(f"wrote {ROWS} tickets to {OUT}")


if __name__ == "__main__":
    main()
