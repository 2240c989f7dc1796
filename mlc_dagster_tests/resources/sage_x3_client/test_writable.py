"""The write allow-list: suppliers and dimensions only, the GL refused before any call."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from mlc_dagster.resources.sage_x3_client import (
    WRITABLE_REST_CLASSES,
    SageX3Client,
    X3Names,
    X3WriteForbidden,
)
from mlc_dagster_tests.resources.sage_x3_client.clients import graphql_client, rest_client


def test_only_suppliers_and_dimensions_are_writable():
    assert WRITABLE_REST_CLASSES == {"BPSUPPLIER", "CACCE"}
    writers = {name for name in dir(SageX3Client)
               if name.startswith(("create", "update", "upsert", "delete", "write", "post", "put"))}
    assert writers == {"create_supplier", "update_supplier", "upsert_dimension"}


@pytest.mark.parametrize("rest_class", ["GACCOUNT", "GACCENTRY", "GJOURNAL", "PORDER"])
def test_the_rest_write_path_refuses_gl_and_other_classes(rest_class):
    calls = []
    names = X3Names()
    names = dataclasses.replace(names, supplier=dataclasses.replace(names.supplier, rest_class=rest_class),
                                dimension=dataclasses.replace(names.dimension, rest_class=rest_class))
    client = rest_client(lambda r: calls.append(r) or httpx.Response(200, json={}), names=names)
    with pytest.raises(X3WriteForbidden, match="never written"):
        client.create_supplier({"supplier_code": "X", "name": "Y"})
    with pytest.raises(X3WriteForbidden):
        client.update_supplier("X", {"name": "Y"})
    with pytest.raises(X3WriteForbidden):
        client.upsert_dimension("PRJ", "X", "Y", True)
    assert calls == []


def test_the_graphql_write_path_refuses_gl_nodes():
    calls = []
    names = X3Names()
    names = dataclasses.replace(names, dimension=dataclasses.replace(
        names.dimension, graphql_node="account", graphql_package="FinanceData"))
    client = graphql_client(lambda r: calls.append(r) or httpx.Response(200, json={}), names=names)
    with pytest.raises(X3WriteForbidden):
        client._mutate("dimension", "create", {"code": "X"})
    assert calls == []
