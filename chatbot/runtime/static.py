"""WhiteNoise's static files, as a middleware that also runs async.

WhiteNoise's own middleware is synchronous only. In Django's async request path (daphne) a sync
middleware makes Django run it on a thread of the request's own and the rest of the request (every
view, the async ones too) inside `async_to_sync` under it: each request holds a thread for as long
as it runs, and every `sync_to_async` call of the view goes back to that thread, so the database
threads of `chatbot.runtime.db` could not be used (tests/benchmarks/bench_streams.py: 200 streamed
API answers opened 198 Postgres connections). This one answers a static file the same way and
otherwise awaits the next handler; looking the file up is a dict lookup (or, with autorefresh in
development, a look at the disk).
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> Any:
        if self.autorefresh:
            static_file = self.find_file(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)
        return await self.get_response(request)
