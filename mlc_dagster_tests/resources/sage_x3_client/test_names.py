"""X3 names as configuration: validated, and read from the environment."""

from __future__ import annotations

import dataclasses

import pytest

from mlc_dagster.resources.sage_x3_client import SageX3RestClient, X3Names, names_from_env
from mlc_dagster_tests.resources.sage_x3_client.clients import BASE


def test_names_are_validated_so_config_cannot_inject():
    names = X3Names()
    with pytest.raises(ValueError):
        dataclasses.replace(names.purchase_order, rest_class="PORDER?x=1")
    with pytest.raises(ValueError):
        dataclasses.replace(names.supplier, graphql_fields={"name": "companyName1 } evil {"})
    with pytest.raises(ValueError):
        SageX3RestClient(BASE, "SEED/../X", "u", "p")


@pytest.mark.parametrize("env, message", [
    ({"MLC_MAPPING_KEY": "cost_centre"}, "MLC_MAPPING_KEY must be gl_account or dimension"),
    ({"MLC_MAPPING_KEY": "dimension"}, "needs a dimension type"),
    ({"MLC_MAPPING_KEY": "dimension:C C"}, "not an X3 code"),
    ({"MLC_X3_REST_LINE_ACCOUNT": "A:B"}, "MLC_X3_REST_LINE_ACCOUNT must be"),
    ({"MLC_X3_REST_LINE_DIMENSION": "CPT;DROP:VCRLIN:CCE"}, "MLC_X3_REST_LINE_DIMENSION"),
    ({"MLC_X3_INVOICE_STATUS_FIELD": "STA or 1"}, "not an X3 class/column name"),
    ({"MLC_X3_GRAPHQL_LINE_ACCOUNT": "account.code }"}, "not a GraphQL name"),
])
def test_name_settings_are_validated_naming_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        names_from_env(env)
