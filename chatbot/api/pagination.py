"""Page-number pagination with a ceiling on the page number.

django-ninja's own accepts any page: `?page=10**30` reaches the database as an OFFSET past
PostgreSQL's bigint (a 500), and every large page makes the database walk that many rows to
return none. Here a page over `API_MAX_PAGE` is refused with a 422 like any other bad parameter,
and a page past the end is answered empty from the count alone, without asking for rows.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Field, Schema
from ninja.errors import ValidationError
from ninja.pagination import PageNumberPagination


class BoundedPageNumberPagination(PageNumberPagination):
    class Input(Schema):
        # The ceiling is checked below against the setting as it is at request time; the schema
        # states it as it was when the API was loaded (the same, outside tests that change it).
        page: int = Field(1, ge=1, json_schema_extra={"maximum": settings.API_MAX_PAGE})
        page_size: int | None = Field(
            None, ge=1, description="At most 100; a larger one is served 100 a page."
        )

    def paginate_queryset(
        self, queryset: QuerySet[Any], pagination: Any, request: HttpRequest, **params: Any
    ) -> Any:
        if pagination.page > settings.API_MAX_PAGE:
            limit = settings.API_MAX_PAGE
            # As pydantic words it, so the 422 reads (and is shaped) like every other bad field.
            raise ValidationError(
                [
                    {
                        "loc": ("query", "pagination", "page"),
                        "type": "less_than_equal",
                        "msg": f"Input should be less than or equal to {limit}",
                    }
                ]
            )
        page_size = self._get_page_size(pagination.page_size)
        offset = (pagination.page - 1) * page_size
        count = self._items_count(queryset)
        items = queryset[offset : offset + page_size] if offset < count else []
        return {self.items_attribute: items, "count": count}
