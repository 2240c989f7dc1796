"""OAuth: the client-credentials token, its revocation and the token info endpoint."""

from __future__ import annotations

import base64
import time

from starlette.responses import Response

from mlc_sandbox.procore.errors import ApiError, oauth_error
from mlc_sandbox.procore.routing import (
    FORM_BODY,
    JSON_BODY,
    MULTIPART_BODY,
    Call,
    api,
    json_response,
)
from mlc_sandbox.seed import SANDBOX_CREDENTIALS

INVALID_TOKEN = "The access token is invalid"
INVALID_CLIENT = ("Client authentication failed due to unknown client, no client authentication "
                  "included, or unsupported authentication method.")


# The three encodings the sources show: multipart (procore/documentation
# oauth/oauth_client_credentials.md, curl -F), x-www-form-urlencoded
# (api_essentials/troubleshooting.md, "Body (x-www-form-urlencoded)") and JSON (OAS: POST
# /oauth/token (Get or Refresh an Access Token), Content-Type: application/json).
@api("POST", "/oauth/token", company_header=False,
     body_types=(FORM_BODY, MULTIPART_BODY, JSON_BODY))
def issue_token(call: Call) -> Response:
    """Client-credentials grant (form, multipart or JSON body; HTTP Basic also accepted)."""
    body = call.body
    client_id, client_secret = body.get("client_id"), body.get("client_secret")
    scheme, _, encoded = call.request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and client_id is None:
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            raise oauth_error(401, "invalid_client", INVALID_CLIENT) from None
    grant_type = body.get("grant_type")
    if not grant_type:
        raise oauth_error(400, "invalid_request", "The request is missing a required parameter: "
                                                  "grant_type.")
    if grant_type != "client_credentials":
        raise oauth_error(400, "unsupported_grant_type", "The authorization grant type is not "
                                                         "supported by the authorization server.")
    if (client_id != SANDBOX_CREDENTIALS["procore_client_id"]
            or client_secret != SANDBOX_CREDENTIALS["procore_client_secret"]):
        raise oauth_error(401, "invalid_client", INVALID_CLIENT)
    token = call.state.issue_token(client_id)
    return json_response(200, {"access_token": token["access_token"], "token_type": "bearer",
                               "expires_in": token["lifetime"], "created_at": int(token["issued"])})


# "The request must contain the access token and other required parameters in the request
# body as form-data" (procore/documentation oauth/oauth_endpoints.md, "Revoke Token", whose
# example is curl -F, i.e. multipart; OAS: POST /oauth/revoke (Revoke Token): "must contain the
# body data as form-data"). Read strictly: multipart only, not x-www-form-urlencoded.
@api("POST", "/oauth/revoke", company_header=False, body_types=(MULTIPART_BODY,))
def revoke_token(call: Call) -> Response:
    """200 for a revoked and for an unknown token (as documented), once the client is known.

    client_id and, for a confidential app such as a DMSA, client_secret are required (same
    page: "client_secret is only required for confidential applications"). Wrong or missing
    credentials: 401 invalid_client; no token: 400 invalid_request (RFC 7009 section 2.1 and
    RFC 6749 section 5.2 shapes, ASSUMPTION).
    """
    if (call.body.get("client_id") != SANDBOX_CREDENTIALS["procore_client_id"]
            or call.body.get("client_secret") != SANDBOX_CREDENTIALS["procore_client_secret"]):
        raise oauth_error(401, "invalid_client", INVALID_CLIENT)
    if not call.body.get("token"):
        raise oauth_error(400, "invalid_request", "The request is missing a required parameter: "
                                                  "token.")
    token = call.state.tokens.get(str(call.body["token"]))
    if token is not None:
        token["revoked"] = True
    return json_response(200, {})


@api("GET", "/oauth/token/info", company_header=False)
def token_info(call: Call) -> Response:
    _, _, access_token = call.request.headers.get("authorization", "").partition(" ")
    token = call.state.valid_token(access_token.strip())
    if token is None:
        raise ApiError(401, {"error": "invalid_token", "error_description": INVALID_TOKEN})
    return json_response(200, {
        "resource_owner_id": call.state.user["id"], "scopes": [],
        "expires_in_seconds": max(0, int(token["expires_at"] - time.time())),
        "application": {"uid": token["client_id"]}, "created_at": int(token["issued"]),
    })
