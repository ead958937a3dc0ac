"""The Django project package and the core app that owns the one data model."""
