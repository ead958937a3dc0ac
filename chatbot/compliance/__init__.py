"""Compliance: personal data (recognizing, scrubbing, redacting for a viewer). It sits below the
features that show or export text, and imports only the data model, accounts and libraries."""
