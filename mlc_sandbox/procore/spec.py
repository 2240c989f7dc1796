"""Procore's official request shapes, and the body filter the sandbox builds on them.

`procore_api_subset.json` holds, for every operation the sandbox serves, the request as
Procore's OpenAPI publishes it (the Postman conversion of rest_OAS_all): path, query and
header parameters and the body template. Procore's API ignores the body attributes it does
not permit (issue 13 point 4), so the sandbox drops every attribute that is not in the
operation's body template before a handler sees the body: a dropped field is never stored
and never echoed, and the call log names it (`dropped`), so a client that relies on an
undocumented field fails its tests.

The same subset says which `filters[...]` each list operation takes (the sandbox applies no
other) and which formats its date-range bounds may have; the value sets the OAS descriptions
refer to (ISO 3166 country and state codes) are here too.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).with_name("procore_api_subset.json")
# OAS templates spell a custom field `custom_field_%{custom_field_definition_id}`; requests
# send `custom_field_<definition id>`.
CUSTOM_FIELD_TEMPLATE = "custom_field_%{custom_field_definition_id}"
CUSTOM_FIELD = re.compile(r"custom_field_\d+")


def requests() -> list[dict]:
    """Every operation of the subset, as stored (name, method, path, query, body_template...)."""
    return _spec()["requests"]


@lru_cache(maxsize=1)
def _spec() -> dict:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def route_key(method: str, path: str) -> tuple[str, str]:
    """(METHOD, path) with Postman's `:param` written as Starlette's `{param}`."""
    return method.upper(), re.sub(r":(\w+)", r"{\1}", path)


@lru_cache(maxsize=1)
def body_templates() -> dict[tuple[str, str], Any]:
    """Route -> the body template the sandbox filters against (None: no body documented).

    Built once: every array is reduced to one element template (the union of its example
    elements), so filtering a request never merges examples again.
    """
    templates = {}
    for request in requests():
        method, path = route_key(request["method"], request["path"])
        template = _normalized(request["body_template"])
        if path.endswith("/sync") and isinstance(template, dict):
            template = _with_sync_ids(template)
        templates[(method, path)] = template
    return templates


def _normalized(template: Any) -> Any:
    """The template with each array reduced to `[element template]` (`[]`: no example)."""
    if isinstance(template, dict):
        return {key: _normalized(value) for key, value in template.items()}
    if isinstance(template, list):
        element = _element_template(template)
        return [] if element is None else [_normalized(element)]
    return template


def _with_sync_ids(template: dict) -> dict:
    """Sync items may carry `id` even where the template omits it: procore/documentation
    tutorials/using_sync_actions.md ("specified by supplying either an id or an origin_id")."""
    updates = template.get("updates")
    if not (isinstance(updates, list) and updates and isinstance(updates[0], dict)):
        return template
    return {**template, "updates": [{"id": "<integer>", **updates[0]}]}


def _element_template(items: list) -> Any:
    """One template for every element of an array: the union of the example elements."""
    shapes = [item for item in items if isinstance(item, dict)]
    if not shapes:
        return items[0] if items else None
    merged: dict = {}
    for shape in shapes:
        for key, value in shape.items():
            if isinstance(merged.get(key), dict) and isinstance(value, dict):
                merged[key] = {**merged[key], **value}
            else:
                merged.setdefault(key, value)
    return merged


def permitted_body(body: dict, template: Any) -> tuple[dict, list[str]]:
    """The body with only the attributes the template names, and the dotted paths dropped.

    `template` as body_templates() gives it. Nested objects and arrays of objects are
    filtered the same way, array elements against the union of the template's example
    elements; scalar values are kept whatever their type (the handler validates them). No
    template at all (an operation documented without a body) permits nothing.
    """
    dropped: list[str] = []
    kept = _filter(body, template if isinstance(template, dict) else {}, "", dropped)
    return kept, dropped


def _filter(value: Any, template: Any, path: str, dropped: list[str]) -> Any:
    if isinstance(template, dict) and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in template:
                inner = template[key]
            elif CUSTOM_FIELD_TEMPLATE in template and CUSTOM_FIELD.fullmatch(key):
                inner = template[CUSTOM_FIELD_TEMPLATE]
            else:
                dropped.append(f"{path}.{key}" if path else key)
                continue
            # Scalars are kept as they are: a path is only spelled out to go deeper.
            out[key] = (_filter(item, inner, f"{path}.{key}" if path else key, dropped)
                        if isinstance(inner, (dict, list)) else item)
        return out
    if isinstance(template, list) and isinstance(value, list):
        if not (template and isinstance(template[0], dict)):
            return value
        return [_filter(item, template[0], f"{path}[{index}]", dropped)
                for index, item in enumerate(value)]
    return value


# --- filters: only where the operation lists them ---------------------------------------------

FILTER_KEY = re.compile(r"filters\[(\w+)\](?:\[\])?")


@lru_cache(maxsize=1)
def listed_filters() -> dict[tuple[str, str], frozenset[str]]:
    """Route -> the `filters[...]` names its OAS query list declares (`filters[x][]` is `x`).

    "Only a subset of the available List Actions ... support filtering. Please see the
    individual endpoint documentation pages for filtering capability" (procore/documentation
    tutorials/filtering_on_list_actions.md). The sandbox applies no filter the operation does
    not list, so a client relying on one gets the unfiltered list, as it would from Procore
    (that Procore ignores rather than refuses an unlisted filter: ASSUMPTION).
    """
    listed: dict[tuple[str, str], frozenset[str]] = {}
    for request in requests():
        names = {m.group(1) for q in request["query"] if (m := FILTER_KEY.fullmatch(q["key"]))}
        listed[route_key(request["method"], request["path"])] = frozenset(names)
    return listed


# Bounds of a `filters[created_at]` / `filters[updated_at]` range. The OAS descriptions list
# "`YYYY-MM-DD`...`YYYY-MM-DD` - Date", "`YYYY-MM-DDTHH:MM:SSZ`...`YYYY-MM-DDTHH:MM:SSZ` -
# DateTime with UTC Offset" and, on some operations, "`YYYY-MM-DDTHH:MM:SS+XX:00`... - Datetime
# with Custom Offset" (e.g. OAS: GET /rest/v1.0/purchase_order_contracts (List of Purchase
# Order Contracts)). `+XX` is read as a signed hour offset; minutes other than 00 are refused.
_DAY = r"\d{4}-\d{2}-\d{2}"
RANGE_BOUND_FORMATS = {
    "date": re.compile(_DAY),
    "utc": re.compile(_DAY + r"T\d{2}:\d{2}:\d{2}Z"),
    "offset": re.compile(_DAY + r"T\d{2}:\d{2}:\d{2}[+-]\d{2}:00"),
}


@lru_cache(maxsize=256)
def range_formats(method: str, path: str, name: str) -> tuple[str, ...]:
    """The bound formats the operation's description of `filters[name]` lists.

    The custom-offset format only where the description lists it; a description that lists
    no formats ("ISO8601 datetime range") gets the two every listing names, date and UTC
    (ASSUMPTION, the stricter reading).
    """
    for request in requests():
        if route_key(request["method"], request["path"]) != (method, path):
            continue
        for query in request["query"]:
            if query["key"] == f"filters[{name}]" and "+XX:00" in (query.get("description")
                                                                   or ""):
                return ("date", "utc", "offset")
    return ("date", "utc")


def range_bound_format(value: str, formats: tuple[str, ...]) -> str | None:
    """Which of the allowed formats the bound is written in, or None."""
    return next((f for f in formats if RANGE_BOUND_FORMATS[f].fullmatch(value)), None)


# --- country and state codes ------------------------------------------------------------------

# "The `country_code` and `state_code` parameter values must conform to the ISO-3166 Alpha-2
# specification" (OAS: POST /rest/v1.0/vendors (Create company vendor), PATCH
# /rest/v1.0/vendors/sync, POST /rest/v1.0/projects, PATCH /rest/v1.0/projects/sync;
# procore/documentation best_practices/country_codes.md). The 249 officially assigned
# ISO 3166-1 alpha-2 codes, as listed in the tz database's iso3166.tab. Reserved codes such
# as UK, EU or XK are not in it.
ISO_3166_ALPHA2 = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())

# best_practices/country_codes.md: subdivision codes "also follow the upper-case,
# two-character scheme. For example, the ISO-3166 Alpha-2 code for California is 'CA'".
# A state_code is therefore two upper-case letters or digits; for the two countries whose
# ISO 3166-2 subdivisions all have such codes it must also be one of them.
STATE_CODE = re.compile(r"[A-Z0-9]{2}")
ISO_3166_2_SUBDIVISIONS = {
    # ISO 3166-2:US: 50 states, DC and the six outlying areas.
    "US": frozenset("""
    AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ
    NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR UM VI
    """.split()),
    # ISO 3166-2:CA: 10 provinces and 3 territories.
    "CA": frozenset("AB BC MB NB NL NS NT NU ON PE QC SK YT".split()),
}
