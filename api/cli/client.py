"""The CLI's HTTP client of the kcm API (requests), and ``api_options``, the options every API command takes.

An answer of 4xx/5xx becomes ``CommandFailed`` (exit 1) carrying the API's message and its field errors; no
answer at all becomes ``CannotConnect`` (exit 3). The token travels only in the ``Authorization`` header and is
never part of a message. ``requests`` is imported when a command runs, not with the CLI.
"""
from __future__ import annotations

import functools
import json
import re
from urllib.parse import quote

import click

from api.cli import output, profiles
from api.cli.errors import BadInput, CannotConnect, CommandFailed

DEFAULT_TIMEOUT = 30.0
PAGE_SIZE = 100  # the API's largest page
USER_AGENT = "kcm-cli"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def path(*parts) -> str:
    """``/consumers/orders/status/`` from its parts, each quoted (a name or id never escapes its segment)."""
    return "/" + "".join(f"{quote(str(p), safe='')}/" for p in parts)


def field_errors(errors, prefix: str = "") -> list[str]:
    """``{"json": {"topic": ["..."]}}`` -> ``["json.topic: ..."]``, nested keys joined by dots."""
    if isinstance(errors, dict):
        lines = []
        for key, value in errors.items():
            lines += field_errors(value, f"{prefix}.{key}" if prefix else str(key))
        return lines
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return [f"{prefix}: {' '.join(errors)}"]
    if isinstance(errors, list):
        return [line for i, e in enumerate(errors) for line in field_errors(e, f"{prefix}.{i}")]
    return [f"{prefix}: {errors}"]


def refusal(response) -> CommandFailed:
    """The API's error body as one message: ``422 Unprocessable Entity: ...`` then a line per field error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        head = f"{body.get('code', response.status_code)} {body.get('status', response.reason)}: {body['message']}"
        lines = field_errors(body.get("errors") or {})
    else:
        text = (response.text or "").strip().splitlines()
        head = f"{response.status_code} {response.reason}" + (f": {text[0][:200]}" if text else "")
        lines = []
    return CommandFailed("\n".join([head, *(f"  {line}" for line in lines)]))


def _reason(exc) -> str:
    found = _ERRNO.search(str(exc))
    return found.group(1).strip() if found else type(exc).__name__


class Api:
    """One command's connection to the API."""

    def __init__(self, url: str, token: str | None, timeout: float = DEFAULT_TIMEOUT):
        self.url = url
        self.timeout = timeout
        self._token = token
        self._session = None

    def _http(self):
        if self._session is None:
            import requests

            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
            if self._token:
                self._session.headers["Authorization"] = f"Bearer {self._token}"
        return self._session

    def request(self, method: str, route: str, *, body=None, params=None):
        import requests

        try:
            response = self._http().request(method, self.url + route, json=body, params=params,
                                            timeout=self.timeout)
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema):
            raise BadInput(f"--api {self.url!r} is not an http:// or https:// URL") from None
        except requests.exceptions.Timeout:
            raise CannotConnect(f"the kcm API at {self.url} did not answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError as exc:
            raise CannotConnect(f"cannot reach the kcm API at {self.url} ({_reason(exc)}); is it running? "
                                "(`make run` starts the local one; --api, KCM_API_URL or a profile names another)"
                                ) from None
        except requests.exceptions.RequestException as exc:  # e.g. the connection broke mid-answer
            raise CannotConnect(f"{method} {self.url}{route} failed before the API answered in full "
                                f"({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise refusal(response)
        return response

    def call(self, method: str, route: str, *, body=None, params=None):
        """The decoded body (None for a 204)."""
        return self.decoded(method, route, self.request(method, route, body=body, params=params))

    def decoded(self, method: str, route: str, response):
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:  # e.g. --api names something that is not kcm
            raise CommandFailed(f"{method} {route}: {self.url} answered {response.status_code} with a body that "
                                "is not JSON; is it the kcm API?") from None

    def get(self, route: str, **params):
        return self.call("GET", route, params={k: v for k, v in params.items() if v is not None} or None)

    def post(self, route: str, body=None, **params):
        return self.call("POST", route, body=body, params=params or None)

    def patch(self, route: str, body):
        return self.call("PATCH", route, body=body)

    def delete(self, route: str):
        return self.call("DELETE", route)

    def pages(self, route: str, limit: int | None = None, **params) -> list:
        """Every item of a paginated list (X-Pagination), or the first ``limit``."""
        items: list = []
        page = 1
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            size = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit - len(items)))
            response = self.request("GET", route, params={**params, "page": page, "page_size": size})
            items += self.decoded("GET", route, response) or []
            meta = json.loads(response.headers.get("X-Pagination") or "{}")
            if not meta.get("next_page") or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]
            page = meta["next_page"]


def api_options(command):
    """``--api``, ``--token``, ``--profile``, ``--timeout`` and ``-o``; the command gets ``api`` and ``fmt``.

    The same options on the root group (``kcm --profile prod consumers list``) apply when the command's are not
    given."""

    @functools.wraps(command)
    def run(*args, api_url, token, profile, timeout, output: str | None, **kwargs):
        root = click.get_current_context().find_root().obj or {}
        target = profiles.resolve(api_url or root.get("api_url"), token or root.get("token"),
                                  profile or root.get("profile"))
        return command(*args, api=Api(target.api, target.token, timeout), fmt=output_format(output, root),
                       **kwargs)

    own = len(getattr(run, "__click_params__", []))
    for option in reversed(connection_options()):
        run = option(run)
    run = output.output_option(run)
    params = run.__click_params__  # click lists them in reverse: the shared options go after the command's own
    run.__click_params__ = params[own:] + params[:own]
    return run


def output_format(value: str | None, root: dict) -> str:
    return output.resolve_format(value or root.get("output"))


def connection_options(*, with_timeout: bool = True) -> list:
    options = [
        click.option("--api", "api_url", metavar="URL",
                     help=f"The kcm API (else --profile, KCM_API_URL, the current profile, {profiles.DEFAULT_API})."),
        click.option("--token", metavar="TOKEN", help="Bearer token (else the profile's, or KCM_TOKEN)."),
        click.option("--profile", metavar="NAME", envvar="KCM_PROFILE", help="A profile of `kcm profile list`."),
    ]
    if with_timeout:
        options.append(click.option("--timeout", type=click.FloatRange(min=0.1), default=DEFAULT_TIMEOUT,
                                    show_default=True, metavar="SECONDS", help="Longest wait for one API answer."))
    return options
