"""How much memory one fit may use, and the check that stops a fit before it allocates more.

``svm.max_memory_gb`` sets the limit for the duration of one fit (:data:`MEMORY_LIMIT`);
without it, a share of the memory available when the fit starts, capped by the job's cgroup
limit (a SLURM job, a container).
"""

from __future__ import annotations

import contextvars
from pathlib import Path

from ..errors import SVMMemoryError

# The bytes a fit may use: set by fit_svm for the duration of one fit (None: what is available).
MEMORY_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "svm_memory_limit", default=None
)
# Without an explicit limit, a fit may use this share of the memory available when it starts.
AVAILABLE_SHARE = 0.9


def available_memory() -> int:
    """Bytes available to this process now: MemAvailable of /proc/meminfo, capped by the cgroup's
    memory.max − memory.current where there is one (a SLURM job, a container)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for room in cgroup_rooms():
        avail = room if avail is None else min(avail, room)
    return int(avail) if avail is not None else 1 << 62


def cgroup_rooms(proc: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> list[int]:
    """Bytes left under this process's cgroup memory limits: v2 (``0::<path>`` in
    /proc/self/cgroup; memory.max − memory.current) and v1 (``…:memory:<path>``;
    memory.limit_in_bytes − memory.usage_in_bytes). Empty where there is no limit."""
    try:
        lines = Path(proc).read_text().splitlines()
    except OSError:
        return []
    rooms = []
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            group, files = Path(root) / path.lstrip("/"), ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            group = Path(root) / "memory" / path.lstrip("/")
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        try:
            limit = (group / files[0]).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:  # v1 writes "no limit" as ~2^63
                rooms.append(int(limit) - int((group / files[1]).read_text()))
        except (OSError, ValueError):
            continue
    return rooms


def memory_limit() -> int:
    """The bytes the current fit may use (MEMORY_LIMIT, else a share of what is available)."""
    limit = MEMORY_LIMIT.get()
    return int(limit) if limit is not None else int(AVAILABLE_SHARE * available_memory())


def check_memory(nbytes: float, what: str) -> None:
    """Raise SVMMemoryError, naming ``what``, the need and the limit, if nbytes exceed the limit."""
    limit = memory_limit()
    if nbytes > limit:
        raise SVMMemoryError(
            f"{what} needs about {nbytes / 2**30:.2f} GiB, more than the {limit / 2**30:.2f} GiB "
            f"this fit may use; stopped before allocating it. Raise the svm setting "
            f"max_memory_gb (default: {AVAILABLE_SHARE:.0%} of the available memory), run on a "
            f"machine with more memory, or use fewer or narrower features"
        )
