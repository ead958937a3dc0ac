"""The writes of the observability area, for views and tasks: replays, rollups and alerts.

Each lives in its own module (the SQL of the rollups, the replay loop, the alert checks); this
module is the one place callers import them from."""

from observability.alerts import (
    AlertDeliveryFailed,
    alert_deliver,
    alert_rule_delete,
    alert_rule_save,
    alert_rule_set_enabled,
    alerts_evaluate,
)
from observability.replay import InvalidReplay, Pair, replay_create, replay_pairs, replay_run
from observability.rollups import hours_recompute, hours_touched
from observability.rollups_runs import rollups_recompute_recent, rollups_update

__all__ = [
    "AlertDeliveryFailed",
    "InvalidReplay",
    "Pair",
    "alert_deliver",
    "alert_rule_delete",
    "alert_rule_save",
    "alert_rule_set_enabled",
    "alerts_evaluate",
    "hours_recompute",
    "hours_touched",
    "replay_create",
    "replay_pairs",
    "replay_run",
    "rollups_recompute_recent",
    "rollups_update",
]
