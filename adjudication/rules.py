"""The adjudication policy as data: overlap groups, allowed pairs, attendant care, CARCs."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adjudication.reasons import ALL_CODES, DEFAULT_CARC, WAIVABLE


class AllowedOverlap(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    first: str
    second: str
    providers: Literal["different", "any"] = "different"

    @field_validator("first", "second")
    @classmethod
    def _procedure_slash_modifier(cls, value: str) -> str:
        procedure, sep, _modifier = value.partition("/")
        if not sep or not procedure:
            raise ValueError(f"{value!r} is not PROCEDURE/MODIFIER")
        return value


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hourly_procedures: frozenset[str] = frozenset({"OR526"})
    attendant_care_procedures: frozenset[str] = frozenset({"OR526"})
    waivable: frozenset[str] = frozenset()
    overlap_groups: tuple[frozenset[str], ...] = ()
    allowed_overlaps: tuple[AllowedOverlap, ...] = ()
    # X12 CARC per reason code; a code the file leaves out keeps its standard CARC (adjudication.reasons).
    carc: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CARC))
    # TIMELY_FILING: a claim's service date at most this many days before its batch's received date
    # (at most a century: service dates span 1900 to 2099, and a larger count overflows date arithmetic).
    timely_filing_days: int = Field(default=365, ge=0, le=36_525)
    # Service elements of in-home and of residential services: one client's accepted SPAs of the two
    # kinds may not overlap (except an in-home SPA ending on the day a residential one starts).
    in_home_service_elements: frozenset[str] = frozenset({"SE49", "SE151"})
    residential_service_elements: frozenset[str] = frozenset({"SE50", "SE158"})

    @field_validator("carc", mode="after")
    @classmethod
    def _standard_carcs(cls, carc: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(carc) - set(ALL_CODES))
        if unknown:
            raise ValueError(f"carc names unknown reason codes {', '.join(unknown)}")
        return {**DEFAULT_CARC, **carc}

    @model_validator(mode="after")
    def _consistent(self) -> Rules:
        bad_waivable = sorted(self.waivable - WAIVABLE)
        if bad_waivable:
            can = [code for code in ALL_CODES if code in WAIVABLE]
            named = [c for c in ALL_CODES if c in bad_waivable] + [c for c in bad_waivable if c not in ALL_CODES]
            raise ValueError(f"waivable lists {', '.join(named)}, which cannot be waived (only {', '.join(can)})")
        both = sorted(self.in_home_service_elements & self.residential_service_elements)
        if both:
            raise ValueError(f"service elements both in-home and residential: {', '.join(both)}")
        not_hourly = sorted(self.attendant_care_procedures - self.hourly_procedures)
        if not_hourly:
            raise ValueError(f"attendant-care procedures must be hourly: {', '.join(not_hourly)}")
        seen: dict[str, int] = {}
        for index, group in enumerate(self.overlap_groups):
            for procedure in group:
                if procedure in seen:
                    raise ValueError(f"procedure {procedure} is in two overlap groups")
                seen[procedure] = index
        for pair in self.allowed_overlaps:
            if pair.first == pair.second:
                raise ValueError(f"{pair.first} with itself is always a duplicate; it cannot be allowed")
            groups = {seen.get(side.partition("/")[0]) for side in (pair.first, pair.second)}
            if len(groups) != 1 or None in groups:
                raise ValueError(f"allowed pair {pair.first} + {pair.second} is not inside one overlap group")
        return self

    def group_of(self, procedure: str) -> int | None:
        """Index of the overlap group holding this procedure, None when it is in none."""
        for index, group in enumerate(self.overlap_groups):
            if procedure in group:
                return index
        return None

    def allowance(self, first: tuple[str, str], second: tuple[str, str]) -> str | None:
        """How the pair ((procedure, modifier), (procedure, modifier)) may overlap: None, 'different' or 'any'."""
        a, b = "/".join(first), "/".join(second)
        for pair in self.allowed_overlaps:
            if {pair.first, pair.second} == {a, b}:
                return pair.providers
        return None


class RulesError(ValueError):
    """The rules file cannot be used; the message names the file and the problem, on one line."""


def default_rules_text() -> str:
    """The shipped rules (adjudication/default_rules.toml, package data)."""
    return resources.files(__package__).joinpath("default_rules.toml").read_text(encoding="utf-8")


@cache
def default_rules() -> Rules:
    """The shipped rules, validated (once per process: Rules is frozen)."""
    return parse_rules(default_rules_text().encode(), "(default)")


def parse_rules(data: bytes, source: str) -> Rules:
    """Validate a rules file's content (TOML); a problem is a RulesError naming `source`.
    Reading the file is the caller's (worker/files.py): the engine reads no file."""
    try:
        return Rules.model_validate(tomllib.loads(data.decode("utf-8")))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RulesError(f"rules file {source}: not valid TOML ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise RulesError(f"rules file {source}: nested too deeply") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ").splitlines()[0]
        more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
        raise RulesError(f"rules file {source}: {where + ': ' if where else ''}{message}{more}") from None
