"""Sage X3 clients: the Syracuse REST web API and the GraphQL API, behind one interface.

Both clients yield the same *canonical* records (decimals as normalised strings, stamps
as `YYYY-MM-DDTHH:MM:SSZ`), so nothing downstream knows which API was used. Class,
representation, node and field names differ between X3 versions and set-ups, so they are
configuration (`X3Names`); GraphQL selection sets are built from the configured paths.

One concern per module:
- `errors`: the exceptions, and reading X3's diagnoses (missing record, session errors);
- `literals`: stamps, names and values put into query texts, checked first;
- `names`: where each entity lives in X3 (`X3Names`, `names_from_env`, `MappingKey`);
- `records`: canonical fields and value converters, `record_key`;
- `cursor`: `DeltaCursor`, the delta-read high-water mark;
- `auth`: httpx auth flows (HTTP Basic, the HS256 JWT, a provided gateway token);
- `writable`: the write allow-list; `base`: `SageX3Client`; `rest`, `graphql`: the two APIs.

Safety rules enforced here rather than by convention:
- values placed in a REST `where` go through `where_literal`, GraphQL filter values through
  `filter_literal`; nothing user-supplied is concatenated raw;
- only suppliers and analytical dimension values can be written; GL accounts, journals and
  accounting entries are refused by an allow-list (`WRITABLE_REST_CLASSES`) and a deny pattern.
"""

from mlc_dagster.resources.sage_x3_client.auth import (
    JWT_CLOCK_SKEW_SECONDS,
    BearerAuth,
    JwtBearerAuth,
    ProvidedTokenAuth,
    UserPasswordAuth,
    X3Auth,
)
from mlc_dagster.resources.sage_x3_client.base import SageX3Client
from mlc_dagster.resources.sage_x3_client.cursor import DeltaCursor
from mlc_dagster.resources.sage_x3_client.errors import (
    MISSING_RECORD_MESSAGE,
    SageX3AuthError,
    SageX3Error,
    X3WriteForbidden,
)
from mlc_dagster.resources.sage_x3_client.graphql import SageX3GraphQLClient
from mlc_dagster.resources.sage_x3_client.literals import (
    filter_literal,
    format_stamp,
    graphql_literal,
    parse_stamp,
    where_literal,
)
from mlc_dagster.resources.sage_x3_client.names import (
    DEFAULT_GRAPHQL_LINE_DIMENSIONS,
    DEFAULT_LINE_ACCOUNT,
    DEFAULT_LINE_DIMENSION,
    EntityNames,
    LineValueSource,
    MappingKey,
    X3Names,
    names_from_env,
)
from mlc_dagster.resources.sage_x3_client.records import (
    CANONICAL_FIELDS,
    CANONICAL_KEYS,
    CANONICAL_LINE_FIELDS,
    ENTITIES,
    canonical_int,
    record_key,
)
from mlc_dagster.resources.sage_x3_client.rest import SageX3RestClient, key_segment
from mlc_dagster.resources.sage_x3_client.writable import (
    WRITABLE_GRAPHQL_NODES,
    WRITABLE_REST_CLASSES,
)

__all__ = [
    "CANONICAL_FIELDS",
    "CANONICAL_KEYS",
    "CANONICAL_LINE_FIELDS",
    "DEFAULT_GRAPHQL_LINE_DIMENSIONS",
    "DEFAULT_LINE_ACCOUNT",
    "DEFAULT_LINE_DIMENSION",
    "ENTITIES",
    "JWT_CLOCK_SKEW_SECONDS",
    "MISSING_RECORD_MESSAGE",
    "WRITABLE_GRAPHQL_NODES",
    "WRITABLE_REST_CLASSES",
    "BearerAuth",
    "DeltaCursor",
    "EntityNames",
    "JwtBearerAuth",
    "LineValueSource",
    "MappingKey",
    "ProvidedTokenAuth",
    "SageX3AuthError",
    "SageX3Client",
    "SageX3Error",
    "SageX3GraphQLClient",
    "SageX3RestClient",
    "UserPasswordAuth",
    "X3Auth",
    "X3Names",
    "X3WriteForbidden",
    "canonical_int",
    "filter_literal",
    "format_stamp",
    "graphql_literal",
    "key_segment",
    "names_from_env",
    "parse_stamp",
    "record_key",
    "where_literal",
]
