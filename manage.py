#!/usr/bin/env python
"""Django's command-line utility; starts the embedded services first when they are in use."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
    import django
    from django.core.management import execute_from_command_line

    django.setup(set_prefix=False)
    from chatbot.runtime.embedded import ensure_services

    ensure_services()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
