"""Migration branches: the event log's in the runtime, the gateway's tables in the gateway's own package."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from services.launcher.migrations import SERVICE_MIGRATIONS
from services.runtime.eventstore.migrations import _config


def scripts(*locations) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config("postgresql://unused/db", locations))


def test_the_event_log_and_the_gateway_are_branches_of_their_own() -> None:
    everything = scripts(*SERVICE_MIGRATIONS)
    bases = {base: everything.get_revision(base) for base in everything.get_bases()}
    assert {label for base in bases.values() for label in base.branch_labels} == {"eventlog", "gateway"}
    assert everything.get_revision("eventlog@head").revision == "0002"
    assert everything.get_revision("gateway@head").revision == "0007"
    # The gateway's tables need the log's (0002), and nothing in the log needs them.
    gateway_base = next(base for base in bases.values() if "gateway" in base.branch_labels)
    assert gateway_base.down_revision is None and gateway_base.dependencies == "0002"


def test_the_runtime_alone_knows_nothing_of_the_gateways_tables() -> None:
    log_only = scripts()
    assert [r.revision for r in log_only.walk_revisions()] == ["0002", "0001"]
