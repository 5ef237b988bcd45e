"""Providers from the environment, a `.env` file or a TOML file.

pydantic-settings reads each source (`EnvSettingsSource`, `DotEnvSettingsSource`,
`TomlConfigSettingsSource`) and `ProviderSettings` parses the values; httpool merges
the sources itself, highest first, so that an error names the variable or TOML key
the bad value came from.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeAlias

import httpx
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ._budget import per_worker
from ._config import DEFAULT_LIMITS, OVERRIDES, Provider
from ._errors import ConfigError
from ._secret import Secret, redact_text, redact_url
from ._validate import validate_name

__all__ = ["ProviderSettings", "providers_from_env"]

logger = logging.getLogger("httpool")

StrPath: TypeAlias = str | os.PathLike[str]
Count = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ProviderSettings(BaseSettings):
    """One provider's settings as written in the environment or in TOML; unset is `None`."""

    model_config = SettingsConfigDict(
        extra="forbid", case_sensitive=False, env_ignore_empty=True, hide_input_in_errors=True
    )

    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    auth_header: str | None = None
    http2: bool | None = None
    max_connections: Count | None = None
    max_connections_total: Count | None = None
    max_keepalive_connections: Count | None = None
    keepalive_expiry: Seconds | None = None
    connect_timeout: Seconds | None = None
    read_timeout: Seconds | None = None
    write_timeout: Seconds | None = None
    pool_timeout: Seconds | None = None
    max_lifetime: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    transport: Literal["httpool", "httpx", "aiohttp"] | None = None
    health_path: str | None = None
    warmup: Annotated[int, Field(ge=0, le=1000)] | None = None
    retry_post: bool | None = None
    follow_redirects: bool | None = None
    required: bool | None = None
    allowed_origins: str | list[str] | None = None
    proxy: SecretStr | None = None
    trust_env: bool | None = None
    dns_ttl: Seconds | None = None
    retry: bool | None = None
    retry_attempts: Count | None = None
    max_concurrency: Count | None = None
    rate_limit: str | None = None
    rate_limit_storage: SecretStr | None = None
    rate_limit_key: str | None = None
    rate_limit_on_storage_error: Literal["local", "closed"] | None = None
    breaker: bool | None = None
    breaker_failures: Count | None = None
    breaker_window: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    breaker_cooldown: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values httpool merged from its sources; it reads them itself."""
        return (init_settings,)


FIELDS: Final = tuple(ProviderSettings.model_fields)
#: Settings passed to `Provider(...)` as they are.
_PLAIN: Final = (
    "transport health_path warmup max_lifetime retry_post follow_redirects required "
    "trust_env dns_ttl max_concurrency"
)
#: What to say for each kind of pydantic error (matched on the start of its type).
_PROBLEMS: Final = {
    "int": "expected a whole number",
    "float": "expected a number of seconds",
    "bool": "expected true or false",
    "string": "expected a string",
    "list": "expected a list of strings",
    "finite": "expected a finite number",
}


def providers_from_env(
    names: Iterable[str] | None = None,
    *,
    prefix: str = "HTTPOOL_",
    env_file: StrPath | None = None,
    toml_file: StrPath | None = None,
) -> list[Provider]:
    """Providers configured by environment variables, a `.env` file and a TOML file.

    ```python
    app = FastAPI(lifespan=httpool.lifespan(*httpool.providers_from_env()))
    ```

    `HTTPOOL_OPENAI_BASE_URL`, `HTTPOOL_OPENAI_API_KEY`, `HTTPOOL_OPENAI_MAX_CONNECTIONS`...
    configure provider `openai`; the same keys, lower-case, go in a `[providers.openai]`
    table of `toml_file`. A value set in the environment wins over `env_file`, which wins
    over `toml_file`, which wins over httpool's defaults.

    Arguments:
        names: the providers to load; by default every name that has a base URL: each
            `HTTPOOL_<NAME>_BASE_URL` variable (the name lower-cased) and each
            `[providers.<name>]` table. In variable names `-` and `.` are written `_`.
        prefix: the variables' prefix.
        env_file: a `.env` file to read as well (it does not change `os.environ`).
        toml_file: a TOML file with a `[providers.<name>]` table per provider.

    Raises:
        ConfigError: naming every variable or key whose value is wrong, never a key.
    """
    if isinstance(names, str):
        msg = f"providers_from_env(names={names!r}): pass a list of names, e.g. [{names!r}]"
        raise TypeError(msg)
    sources = _Sources(prefix, env_file, toml_file)
    wanted = sources.discover() if names is None else [_check_name(n) for n in names]
    providers: list[Provider] = []
    for name in wanted:
        provider = sources.load(name)
        if provider is not None:
            providers.append(provider)
    if sources.problems:
        lines = [redact_text(line) for line in sources.problems]
        if len(lines) == 1:
            raise ConfigError(lines[0])
        raise ConfigError(
            f"{len(lines)} problems in the httpool configuration:\n  - " + "\n  - ".join(lines)
        )
    return providers


def _check_name(name: object) -> str:
    return validate_name(name, where="providers_from_env")


def env_key(name: str) -> str:
    """How a provider name is written in variable names: `openai-batch` → `OPENAI_BATCH`."""
    return re.sub(r"[-.]", "_", name).upper()


class _Sources:
    """The environment, the `.env` file and the TOML file, each read once per call."""

    def __init__(self, prefix: str, env_file: StrPath | None, toml_file: StrPath | None) -> None:
        self.prefix = prefix
        self.problems: list[str] = []
        self.env_file = None if env_file is None else os.fspath(env_file)
        self.toml_file = None if toml_file is None else os.fspath(toml_file)
        for path in (self.env_file, self.toml_file):
            if path is not None and not Path(path).is_file():
                msg = f"providers_from_env(): the file {path!r} does not exist"
                raise ConfigError(msg)
        self.env_vars = EnvSettingsSource(ProviderSettings, case_sensitive=False).env_vars
        self.dotenv_vars: Mapping[str, str | None] = {}
        if self.env_file is not None:
            source = DotEnvSettingsSource(ProviderSettings, env_file=self.env_file)
            self.dotenv_vars = source.env_vars
        self.tables = self._toml_tables()

    def _toml_tables(self) -> dict[str, dict[str, Any]]:
        if self.toml_file is None:
            return {}
        try:
            data = TomlConfigSettingsSource(ProviderSettings, toml_file=self.toml_file).toml_data
        except tomllib.TOMLDecodeError as exc:
            msg = f"{self.toml_file}: not valid TOML ({exc})"
            raise ConfigError(msg) from None
        tables: object = data.get("providers", {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            msg = f"{self.toml_file}: write each provider as a [providers.<name>] table"
            raise ConfigError(msg)
        return tables

    def discover(self) -> list[str]:
        """Names with a `[providers.<name>]` table, then those with a base URL variable."""
        names = list(self.tables)
        keys = {env_key(n).lower() for n in names}
        start, end = self.prefix.lower(), "_base_url"
        for var in sorted({**self.dotenv_vars, **self.env_vars}):
            name = var[len(start) : -len(end)]
            if var.startswith(start) and var.endswith(end) and name and name not in keys:
                keys.add(name)
                try:
                    names.append(_check_name(name))
                except ConfigError as exc:
                    self.problems.append(f"{var.upper()}: {exc}")
        return names

    def where(self, name: str, field: str, layer: str) -> str:
        """The variable or TOML key that `field` of provider `name` came from."""
        var = f"{self.prefix}{env_key(name)}_{field}".upper()
        if layer == "env":
            return var
        if layer == "dotenv":
            return f"{var} (in {self.env_file})"
        return f"[providers.{name}] {field} (in {self.toml_file})"

    def load(self, name: str) -> Provider | None:
        """Provider `name`, or `None` after adding what is wrong to `self.problems`."""
        own = f"{self.prefix}{env_key(name)}_".lower()
        self._warn_unknown(own)
        options = {"env_prefix": own, "case_sensitive": False, "env_ignore_empty": True}
        layers: list[tuple[str, Mapping[str, Any]]] = [
            ("env", EnvSettingsSource(ProviderSettings, **options)())  # type: ignore[arg-type]
        ]
        if self.env_file is not None:
            dotenv = DotEnvSettingsSource(ProviderSettings, env_file=self.env_file, **options)  # type: ignore[arg-type]
            layers.append(("dotenv", {k: v for k, v in dotenv().items() if k in FIELDS}))
        table = next((t for n, t in self.tables.items() if env_key(n) == env_key(name)), {})
        layers.append(("toml", table))
        found: dict[str, tuple[Any, str]] = {}
        for layer, values in layers:
            for field, value in values.items():
                found.setdefault(field, (value, layer))
        before = len(self.problems)
        self._one_of(name, found, ("api_key", "api_key_env"))
        self._one_of(name, found, ("max_connections", "max_connections_total"))
        self._read_key(name, found)
        try:
            settings = ProviderSettings(**{f: v for f, (v, _) in found.items()})
        except ValidationError as exc:
            by_field: dict[str, list[str]] = {}  # a union field fails once per member
            for error in exc.errors(include_url=False, include_input=False):
                field = str(error["loc"][0])
                by_field.setdefault(field, []).append(_problem(field, error))
            for field, problems in by_field.items():
                value, layer = found[field]
                shown = self.where(name, field, layer)
                if field not in ("api_key", "api_key_env") and field in FIELDS:
                    text = repr(redact_url(value) if field == "base_url" else value)
                    shown += f"={text}" if len(text) <= 80 else f"={text[:76]}...'"
                either = " or ".join(
                    [problems[0], *(p.removeprefix("expected ") for p in problems[1:])]
                )
                self.problems.append(f"{shown}: {either}")
            return None
        provider = self._build(name, settings, found)
        return provider if len(self.problems) == before else None

    def _warn_unknown(self, own: str) -> None:
        for var in sorted({**self.dotenv_vars, **self.env_vars}):
            rest = var[len(own) :]
            if not var.startswith(own) or rest in FIELDS:
                continue
            if any(rest.endswith(f"_{field}") for field in FIELDS):
                continue  # another provider's, e.g. HTTPOOL_OPENAI_BATCH_BASE_URL
            close = difflib.get_close_matches(rest, FIELDS, n=1)
            hint = f"; did you mean {(own + close[0]).upper()}?" if close else ""
            logger.warning("httpool: %s is not an httpool setting; ignored%s", var.upper(), hint)

    def _one_of(self, name: str, found: dict[str, tuple[Any, str]], pair: tuple[str, str]) -> None:
        """Of two ways to give one setting, keep the one from the highest source."""
        for layer in ("env", "dotenv", "toml"):
            here = [f for f in pair if f in found and found[f][1] == layer]
            if len(here) == 2:
                both = " and ".join(self.where(name, f, layer) for f in pair)
                self.problems.append(f"{both}: set one, not both")
            if here:
                for field in pair:
                    if field != here[0]:
                        found.pop(field, None)
                return

    def _read_key(self, name: str, found: dict[str, tuple[Any, str]]) -> None:
        """Replace `api_key_env` by the key in the variable it names."""
        if "api_key_env" in found:
            variable, layer = found.pop("api_key_env")
            key = os.environ.get(str(variable)) or self.dotenv_vars.get(str(variable).lower())
            if key:
                found["api_key"] = (key, layer)
            else:
                where = self.where(name, "api_key_env", layer)
                self.problems.append(f"{where} names {variable}, which is not set")
        if "api_key" in found and isinstance(found["api_key"][0], str):
            Secret(found["api_key"][0])  # registered, so that no message can show it

    def _build(
        self, name: str, s: ProviderSettings, found: Mapping[str, tuple[Any, str]]
    ) -> Provider | None:
        def at(field: str) -> str:
            return self.where(name, field, found[field][1] if field in found else "env")

        if not s.base_url:
            also = f" (nor base_url in [providers.{name}])" if self.toml_file else ""
            self.problems.append(f"provider {name!r}: {at('base_url')} is not set{also}")
            return None
        options = {k: getattr(s, k) for k in _PLAIN.split() if getattr(s, k) is not None}
        origins = s.allowed_origins
        if origins is not None:
            split = origins.split(",") if isinstance(origins, str) else origins
            options["allowed_origins"] = [o.strip() for o in split if o.strip()]
        if s.auth_header and s.api_key is None:
            self.problems.append(f"{at('auth_header')} is set but the provider has no API key")
        elif s.api_key is not None:
            header, key = s.auth_header or "Authorization", s.api_key.get_secret_value()
            bearer = header.lower() == "authorization"
            options["headers"] = {header: Secret(f"Bearer {key}" if bearer else key)}
        if s.proxy is not None:  # a URL that may carry credentials: kept as a Secret
            options["proxy"] = Secret(s.proxy.get_secret_value())
        before = len(self.problems)
        self._policy(s, options, at)
        if len(self.problems) > before:
            return None
        overrides = {k: getattr(s, k) for k in OVERRIDES if getattr(s, k) is not None}
        if s.max_connections_total is not None:
            budget = httpx.Limits(max_connections=s.max_connections_total)
            overrides["max_connections"] = per_worker(budget).max_connections
        if "max_connections" in overrides and s.max_keepalive_connections is None:
            # As in the defaults, keep every connection alive.
            kept = min(DEFAULT_LIMITS.max_keepalive_connections or 1, overrides["max_connections"])
            overrides["max_keepalive_connections"] = kept
        try:
            return Provider(name, base_url=s.base_url, **options).with_overrides(**overrides)
        except ConfigError as exc:
            match = re.match(r"Provider\(.*?\)\.(\w+)", str(exc))
            field = match.group(1) if match else ""
            if field == "headers":
                field = "auth_header" if "auth_header" in found else "api_key"
            self.problems.append(f"{at(field)}: {exc}" if field in FIELDS else str(exc))
            return None

    def _policy(self, s: ProviderSettings, options: dict[str, Any], at: Any) -> None:
        """The policy fields as `retry`, `rate_limit` and `breaker` objects in `options`;
        what is wrong in `self.problems`, naming the variable or key."""
        from ._policy import Breaker, RateLimit, Retry

        def off_but_set(switch: str, fields: list[str]) -> bool:
            given = [f for f in fields if getattr(s, f) is not None]
            if getattr(s, switch) is False and given:
                self.problems.append(f"{at(given[0])} is set but {at(switch)} is false: remove one")
                return True
            return False

        if not off_but_set("retry", ["retry_attempts"]):
            if s.retry_attempts is not None:
                options["retry"] = Retry(attempts=s.retry_attempts)
            elif s.retry:
                options["retry"] = True
        storage_fields = ["rate_limit_storage", "rate_limit_key", "rate_limit_on_storage_error"]
        given = [f for f in storage_fields if getattr(s, f) is not None]
        if s.rate_limit is None and given:
            self.problems.append(
                f"{at(given[0])} is set but {at('rate_limit')} is not: give the rate, "
                "such as '500/minute'"
            )
        elif s.rate_limit is not None:
            field = "rate_limit"
            try:
                kwargs: dict[str, Any] = {}
                if s.rate_limit_storage is not None:
                    field = "rate_limit_storage"
                    kwargs["storage"] = s.rate_limit_storage.get_secret_value()
                    RateLimit("1/second", **kwargs)  # which field a bad storage URL is
                    field = "rate_limit"
                if s.rate_limit_key is not None:
                    kwargs["key"] = s.rate_limit_key
                if s.rate_limit_on_storage_error is not None:
                    kwargs["on_storage_error"] = s.rate_limit_on_storage_error
                options["rate_limit"] = RateLimit(s.rate_limit, **kwargs)
            except ConfigError as exc:
                self.problems.append(f"{at(field)}: {exc}")
        breaker_fields = ["breaker_failures", "breaker_window", "breaker_cooldown"]
        if not off_but_set("breaker", breaker_fields):
            values = {
                f.removeprefix("breaker_"): getattr(s, f)
                for f in breaker_fields
                if getattr(s, f) is not None
            }
            if values:
                options["breaker"] = Breaker(**values)
            elif s.breaker:
                options["breaker"] = True


def _problem(field: str, error: Mapping[str, Any]) -> str:
    """A short statement of what a pydantic error means for an httpool setting."""
    kind, ctx = str(error["type"]), error.get("ctx") or {}
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, FIELDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(FIELDS)}"
        return f"not an httpool setting; {hint}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}"
    for bound, sign in (("ge", ">="), ("gt", ">"), ("le", "<=")):
        if bound in ctx:
            return f"must be {sign} {ctx[bound]}"
    for start, problem in _PROBLEMS.items():
        if kind.startswith(start):
            return problem
    message = str(error["msg"])
    return message[:1].lower() + message[1:]
