# Airlock evaluates data.airlock.decision for every MCP tools/call.
#
# This file only chooses which policy decides. Out of the box it is the
# baseline (baseline.rego). To adopt an example from examples/, copy the
# library with `airlock policy init DIR`, change the rule below, and point
# Airlock's policy.dir at DIR. For example:
#
#     decision := data.airlock.examples.filesystem.decision
#
# The baseline's deny_anonymous setting refuses callers without an identity
# in the calls the baseline decides; to refuse them whatever policy decides,
# see "Refusing anonymous callers" in docs/policy.md.
#
# docs/policy.md explains the input and decision fields.
package airlock

decision := data.airlock.baseline.decision
