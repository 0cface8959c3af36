"""Batch jobs over several processes: ``torchrun --nproc_per_node N -m sam inference|evaluate ...``.

Each process (rank) takes a disjoint, deterministic share of the sorted input files (every N-th file, starting at
its rank), uses its own GPU where there are GPUs (``cuda:LOCAL_RANK``), and writes its outputs beside the others'.
What must be one file (``stats.txt``, ``evaluation.csv``, the report) is written by rank 0 after a barrier, from
the parts every rank left. A single process (no ``torchrun``) is rank 0 of 1, and nothing here changes it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Shard", "current_shard"]

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """This process's place in a multi-process job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items ``rank, rank + world, ...`` of the (already sorted) list."""
        return list(items[self.rank :: self.world])

    def part_name(self, stem: str, suffix: str) -> str:
        """The name of this rank's part of a file that rank 0 merges (``stem`` itself for a single process)."""
        return f"{stem}{suffix}" if self.world == 1 else f"{stem}.part{self.rank}-of-{self.world}{suffix}"

    def device(self, asked: str | None) -> str | None:
        """``asked``, else each rank's own GPU when there are GPUs and several ranks (else the default)."""
        if asked or self.world == 1:
            return asked
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def barrier(self) -> None:
        """Wait until every rank is here (a gloo process group, made on first use; a no-op for one process)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()


def current_shard() -> Shard:
    """The shard torchrun describes in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (rank 0 of 1 without them)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise SystemExit("error: RANK / WORLD_SIZE / LOCAL_RANK must be whole numbers (set by torchrun)") from None
    if world < 1 or not 0 <= rank < world:
        raise SystemExit(f"error: rank {rank} of {world} processes makes no sense (RANK / WORLD_SIZE)")
    return Shard(rank, world, local)
