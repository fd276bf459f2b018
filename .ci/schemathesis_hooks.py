"""schemathesis hooks for .ci/schemathesis.sh (loaded by SCHEMATHESIS_HOOKS)."""

import re

import schemathesis

# The pattern of a duration in the OpenAPI document.
DURATION = re.compile(r"^[\t\n\r ]*[0-9]+[\t\n\r ]*(ms|s|m|h|d)?[\t\n\r ]*$")


@schemathesis.hook
def map_body(context, body):
    """`POST /remote/fetch` long-polls for up to `wait` (at most 60 s) when
    no job is there: a valid wait is made 0 so a request answers at once,
    within the request timeout. A wait off the pattern is kept, to be
    refused."""
    operation = context.operation
    if (
        operation is not None
        and operation.path == "/remote/fetch"
        and isinstance(body, dict)
        and isinstance(body.get("wait"), str)
        and DURATION.match(body["wait"])
    ):
        body = {**body, "wait": "0"}
    return body
