"""Views of the dashboard area (/dashboard/): overview, turns and traces, replays, alerts."""
