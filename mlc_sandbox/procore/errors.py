"""Procore's whole-request errors and per-field validation failures, in its JSON shapes."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A whole-request failure (400/401/403/404/413/422) with Procore's JSON body."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}


class Invalid(Exception):
    """Validation failure: `{field: [messages]}`; 422 on single writes, per-item in sync."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def missing_param(name: str) -> ApiError:
    # Rails' ActionController::ParameterMissing wording, which Procore's v1 API returns.
    return ApiError(400, {"errors": f"param is missing or the value is empty: {name}"})


def not_found(what: str) -> ApiError:
    return ApiError(404, {"errors": f"{what} not found"})


def add_error(errors: dict[str, list[str]], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def oauth_error(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, {"error": error, "error_description": description})
