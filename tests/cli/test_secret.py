"""The generated development secret: one per data directory, even when processes race."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from api.settings import Settings


def _read(data_dir: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(Settings(_env_file=None, data_dir=Path(data_dir)).hs256_secret())  # type: ignore[call-arg]


def test_processes_starting_at_once_agree_on_one_generated_secret(tmp_path: Path) -> None:
    for trial in range(5):
        data_dir = tmp_path / str(trial)
        ctx = multiprocessing.get_context("fork")
        out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=_read, args=(str(data_dir), out)) for _ in range(6)]
        for p in procs:
            p.start()
        secrets = [out.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert len(set(secrets)) == 1, secrets
        assert len(secrets[0]) >= 32
        assert (data_dir / "jwt_secret").read_text() == secrets[0]
        assert (data_dir / "jwt_secret").stat().st_mode & 0o777 == 0o600
