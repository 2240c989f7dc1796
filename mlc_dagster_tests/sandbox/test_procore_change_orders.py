"""Change orders in the Procore sandbox, over real HTTP: packages, PCOs, their lines, tiers.

Sources for each rule are cited in mlc_sandbox/procore/change_orders.py.
"""

from __future__ import annotations

from mlc_dagster_tests.sandbox.procore_helpers import (  # noqa: F401 - fixtures
    COST_CODE,
    FOREIGN_COST_CODE,
    LINE_ITEM_TYPE,
    PROJECT,
    SEED,
    VENDOR,
    api_fixture,
    approve,
    line,
    make_contract,
    pco_of,
    sandbox_fixture,
    server_fixture,
    sync_lines,
    sync_pco_lines,
)

PACKAGES = "/rest/v1.0/change_order_packages"
PACKAGE_KEYS = {"id", "number", "title", "description", "status", "contract_id", "grand_total",
                "origin_code", "created_at", "updated_at"}
PCO_KEYS = {"id", "number", "title", "status", "contract_id", "change_order_package_id",
            "grand_total", "created_at", "updated_at"}
TIER_2_PROJECT = next(p for p, tier in SEED.change_order_tiers.items() if tier == 2)
TIER_3_PROJECT = next(p for p, tier in SEED.change_order_tiers.items() if tier == 3)


def create_package(api, contract_id, project_id=PROJECT, **change_order):
    body = {"title": "Extra", "origin_id": f"CO-{contract_id}", "origin_code": "PO-1 rev 1",
            **change_order}
    return api.post(PACKAGES, json={"project_id": project_id, "contract_id": contract_id,
                                    "change_order": body})


def set_package_status(api, package_id, status, project_id=PROJECT):
    response = api.patch(f"{PACKAGES}/{package_id}", json={
        "project_id": project_id, "change_order": {"status": status}})
    assert response.status_code == 200, response.text
    return response.json()


def show_contract(api, contract_id, project_id=PROJECT) -> dict:
    response = api.get(f"/rest/v1.0/purchase_order_contracts/{contract_id}",
                       params={"project_id": project_id})
    assert response.status_code == 200, response.text
    return response.json()


def sums(contract: dict) -> dict:
    return {key: contract[key] for key in (
        "grand_total", "draft_change_orders_amount", "pending_change_orders",
        "approved_change_orders", "revised_contract", "pending_revised_contract")}


def test_single_tier_package_gets_a_pco_whose_lines_carry_the_amounts(api):
    contract = make_contract(api, "PO-C", lines=("L1", "L2"))
    approve(api, contract["id"])
    created = create_package(api, contract["id"])
    assert created.status_code == 201, created.text
    package = created.json()
    assert set(package) == PACKAGE_KEYS  # origin_id / origin_data stored, never echoed
    assert (package["number"], package["status"], package["grand_total"]) == ("1", "draft", "0.00")
    assert package["origin_code"] == "PO-1 rev 1"
    assert create_package(api, contract["id"], origin_id="CO-2").json()["number"] == "2"

    pco = pco_of(api, package["id"])
    assert set(pco) == PCO_KEYS and pco["contract_id"] == contract["id"]
    shown = api.get(f"/rest/v1.0/potential_change_orders/{pco['id']}",
                    params={"project_id": PROJECT, "contract_id": contract["id"]})
    assert shown.status_code == 200 and shown.json()["id"] == pco["id"]
    result = sync_pco_lines(api, pco["id"], [
        line("CO-L1", "25.50"),
        {**line("CO-L2", None), "quantity": "4", "unit_cost": "2.5"}])
    assert result["errors"] == []
    lines = result["entities"]
    assert [ln["amount"] for ln in lines] == ["25.50", "10.00"]
    assert lines[0]["cost_code"]["id"] == COST_CODE
    assert lines[0]["line_item_type"]["id"] == LINE_ITEM_TYPE
    assert lines[1]["quantity"] == "4" and lines[1]["unit_cost"] == "2.5"
    again = sync_pco_lines(api, pco["id"], [line("CO-L1", "30.00")])["entities"][0]
    assert again["id"] == lines[0]["id"]  # matched by origin_id on that PCO
    listed = api.get(f"/rest/v1.0/potential_change_orders/{pco['id']}/line_items",
                     params={"project_id": PROJECT}).json()
    assert sorted(ln["amount"] for ln in listed) == ["10.00", "30.00"]
    assert api.get(f"{PACKAGES}/{package['id']}",
                   params={"project_id": PROJECT}).json()["grand_total"] == "40.00"

    assert sums(show_contract(api, contract["id"])) == {
        "grand_total": "200.00", "draft_change_orders_amount": "40.00",
        "pending_change_orders": "0.00", "approved_change_orders": "0.00",
        "revised_contract": "200.00", "pending_revised_contract": "200.00"}
    set_package_status(api, package["id"], "pending")
    assert sums(show_contract(api, contract["id"]))["pending_revised_contract"] == "240.00"
    assert set_package_status(api, package["id"], "approved")["status"] == "approved"
    assert sums(show_contract(api, contract["id"])) == {
        "grand_total": "200.00", "draft_change_orders_amount": "0.00",
        "pending_change_orders": "0.00", "approved_change_orders": "40.00",
        "revised_contract": "240.00", "pending_revised_contract": "240.00"}


def test_pco_lines_validate_like_commitment_lines(api):
    contract = make_contract(api, "PO-V", lines=("L1",))
    pco = pco_of(api, create_package(api, contract["id"]).json()["id"])
    result = sync_pco_lines(api, pco["id"], [
        line("V-OK"), line("V-CODE", cost_code_id=FOREIGN_COST_CODE), line("V-UOM", uom="FURLONG"),
        line("PO-V-L1")])  # a contract line's origin_id: unique per object type only
    assert [e["origin_id"] for e in result["entities"]] == ["V-OK", "PO-V-L1"]
    assert {e["origin_id"]: list(e["errors"]) for e in result["errors"]} == {
        "V-CODE": ["cost_code_id"], "V-UOM": ["uom"]}
    other = pco_of(api, create_package(api, contract["id"], origin_id="CO-X").json()["id"])
    clash = sync_pco_lines(api, other["id"], [line("V-OK")])
    assert clash["errors"][0]["errors"] == {"origin_id": ["has already been taken"]}
    bad = api.post(f"/rest/v1.0/potential_change_orders/{pco['id']}/line_items", json={
        "project_id": PROJECT, "line_item": line("V-BAD", uom="FURLONG")})
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["uom"]  # SDK: 400, no 422


def test_approved_package_locks_the_lines_of_its_pco(api):
    contract = make_contract(api, "PO-L", lines=("L1",))
    package = create_package(api, contract["id"]).json()
    pco = pco_of(api, package["id"])
    base = f"/rest/v1.0/potential_change_orders/{pco['id']}/line_items"
    kept, doomed = sync_pco_lines(api, pco["id"], [line("L-1", "5.00"), line("L-2")])["entities"]
    assert api.delete(f"{base}/{doomed['id']}", params={"project_id": PROJECT}).status_code == 200
    set_package_status(api, package["id"], "approved")

    locked = sync_pco_lines(api, pco["id"], [line("L-1", "6.00"), line("L-3")])
    assert locked["entities"] == [] and len(locked["errors"]) == 2
    assert all(list(e["errors"]) == ["base"] for e in locked["errors"])
    post = api.post(base, json={"project_id": PROJECT, "line_item": line("L-4")})
    patch = api.patch(f"{base}/{kept['id']}", json={"project_id": PROJECT,
                                                     "line_item": {"quantity": "3"}})
    delete = api.delete(f"{base}/{kept['id']}", params={"project_id": PROJECT})
    assert (post.status_code, patch.status_code, delete.status_code) == (400, 400, 422)
    cco = f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders/{package['id']}"
    assert api.delete(cco).status_code == 400  # approved: "cannot be deleted"
    listed = api.get(base, params={"project_id": PROJECT}).json()
    assert [(ln["origin_id"], ln["amount"], ln["quantity"]) for ln in listed] == [
        ("L-1", "5.00", None)]
    set_package_status(api, package["id"], "draft")  # the status itself stays editable
    assert sync_pco_lines(api, pco["id"], [line("L-1", "6.00")])["errors"] == []


def test_show_response_arrays_reveal_the_tier_and_only_single_tier_gets_a_pco(api):
    shapes = {}
    for project_id in (PROJECT, TIER_2_PROJECT, TIER_3_PROJECT):
        contract = make_contract(api, f"PO-T{project_id}", lines=(), project_id=project_id)
        package = create_package(api, contract["id"], project_id=project_id)
        assert package.status_code == 201, package.text
        shown = show_contract(api, contract["id"], project_id)
        arrays = ("change_order_packages", "potential_change_orders", "change_order_requests")
        shapes[project_id] = [name for name in arrays if name in shown]
        assert [p["id"] for p in shown["change_order_packages"]] == [package.json()["id"]]
        listed = api.get("/rest/v1.0/purchase_order_contracts",
                         params={"project_id": project_id}).json()
        assert not any(name in listed[0] for name in arrays)
        pcos = api.get("/rest/v1.0/potential_change_orders",
                       params={"project_id": project_id}).json()
        assert len(pcos) == (1 if project_id == PROJECT else 0)
    assert shapes == {
        PROJECT: ["change_order_packages"],
        TIER_2_PROJECT: ["change_order_packages", "potential_change_orders"],
        TIER_3_PROJECT: ["change_order_packages", "potential_change_orders",
                         "change_order_requests"]}


def test_commitment_change_orders_are_packages_without_origin_id_or_lines(api, sandbox):
    contract = make_contract(api, "PO-K", lines=("L1",))
    path = f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders"
    created = api.post(path, json={"change_order": {
        "contract_id": contract["id"], "title": "Via CCO", "origin_id": "CCO-1",
        "line_items": [{"amount": "25.50", "cost_code_id": COST_CODE}]}})
    assert created.status_code == 201, created.text
    cco = created.json()
    assert "origin_id" not in cco and "line_items" not in cco and cco["grand_total"] == "0.00"
    dropped = [c["dropped"] for c in sandbox.controls.calls if (c["method"], c["path"]) == (
        "POST", path)]
    assert dropped == [["change_order.origin_id", "change_order.line_items"]]
    package = create_package(api, contract["id"]).json()
    sync_pco_lines(api, pco_of(api, package["id"])["id"], [line("K-1", "7.00")])
    listed = api.get(path, params={"filters[contract_id]": contract["id"]}).json()
    assert [(c["id"], c["grand_total"]) for c in listed] == [(cco["id"], "0.00"),
                                                             (package["id"], "7.00")]
    assert all("origin_id" not in c and "line_items" not in c for c in listed)
    assert api.get(f"{path}/{package['id']}").json()["title"] == "Extra"
    assert api.delete(f"{path}/{cco['id']}").status_code == 204
    assert [c["id"] for c in api.get(path).json()] == [package["id"]]
    tier_3 = api.get(f"/rest/v1.0/projects/{TIER_3_PROJECT}/commitment_change_orders")
    assert tier_3.status_code == 400 and "1 and 2 tier" in tier_3.json()["errors"]


def test_package_validation_answers_400_as_documented(api):
    contract = make_contract(api, "PO-E", lines=())
    wrong_contract = api.post(PACKAGES, json={"project_id": PROJECT, "contract_id": 12345,
                                              "change_order": {"title": "x"}})
    assert wrong_contract.status_code == 400
    assert list(wrong_contract.json()["errors"]) == ["contract_id"]
    bad_status = create_package(api, contract["id"], status="complete")
    assert bad_status.status_code == 400 and list(bad_status.json()["errors"]) == ["status"]
    package = create_package(api, contract["id"]).json()
    moved = api.patch(f"{PACKAGES}/{package['id']}", json={
        "project_id": PROJECT, "contract_id": make_contract(api, "PO-F", lines=())["id"],
        "change_order": {"title": "moved"}})
    assert moved.status_code == 400 and list(moved.json()["errors"]) == ["contract_id"]
    assert api.get(f"{PACKAGES}/{package['id']}", params={
        "project_id": PROJECT, "contract_id": VENDOR["id"]}).status_code == 404
    assert api.get(PACKAGES, params={"project_id": PROJECT,
                                     "contract_id": contract["id"]}).json()[0]["id"] == \
        package["id"]


def test_package_numbers_stay_unique_within_a_contract(api):
    """A new package skips a number a client already gave (CCO bodies carry `number`), and a
    taken number is refused: numbers are how a client finds its change orders again."""
    contract = make_contract(api, "PO-N", lines=())
    path = f"/rest/v1.0/projects/{PROJECT}/commitment_change_orders"
    given = api.post(path, json={"change_order": {"contract_id": contract["id"], "title": "A",
                                                  "number": "2"}})
    assert given.status_code == 201 and given.json()["number"] == "2", given.text
    assert create_package(api, contract["id"], origin_id="N-1").json()["number"] == "3"
    taken = api.post(path, json={"change_order": {"contract_id": contract["id"], "title": "B",
                                                  "number": "3"}})
    assert taken.status_code == 422 and list(taken.json()["errors"]) == ["number"]
