"""`tased-batch verify OUTPUT [--repair]`: every committed file against its commit record.

A shard whose files were deleted or damaged after its commit still counts as done, so
``resume`` would never redo it. ``verify`` finds such shards; ``--repair`` withdraws their
commit records under the output's lease, which makes them pending, so ``resume`` redoes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tased_batch.core.errors import StoreError
from tased_batch.stores import layout
from tased_batch.stores.lease import acquire


@dataclass
class VerifyReport:
    """What ``verify`` found: shards checked, the damaged ones (and why), those moved back to pending."""

    output: str
    shards_checked: int
    damaged: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "output": self.output,
            "shards_checked": self.shards_checked,
            "damaged": [{"shard": s, "problem": why} for s, why in sorted(self.damaged.items())],
            "repaired": self.repaired,
        }


def verify_output(uri: str, storage_options: dict | None = None, *, repair: bool = False) -> VerifyReport:
    """Check every committed shard of ``uri``; with ``repair``, make the damaged ones pending."""
    from tased_batch.stores.reader import open_results

    results = open_results(uri, storage_options)
    if not results.fs.exists(layout.join(results.root, "config.json")):
        raise StoreError(f"{uri} holds commit records but no run (no config.json)", "check the OUTPUT path")
    report = VerifyReport(uri, len(results.shards), results.damaged())
    if repair and report.damaged:
        lease = acquire(results.fs, results.root)  # never while a run writes this output
        try:
            for shard in sorted(report.damaged):
                layout.remove_commit(results.fs, results.root, shard)
                report.repaired.append(shard)
        finally:
            lease.release()
    return report
