import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test on one CPU thread.

    The test networks are too small to gain from threads, and on a machine shared with other
    processes OpenMP threads oversubscribe the cores: a UNet step then takes 20-40x longer.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(target, argv, rank: int, world_size: int, port: int, report) -> None:
    """The body of one forked rank; never returns."""
    import os
    import runpy
    import sys
    import traceback

    import torch.distributed as dist

    code = 0
    try:
        os.environ.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world_size),
            LOCAL_WORLD_SIZE=str(world_size),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
        )
        torch.set_num_threads(1)
        destroy = dist.destroy_process_group

        def recording_destroy(*args, **kwargs):  # proof that the ranks formed one group
            if dist.is_initialized():
                report.with_name(f"{report.name}.world").write_text(str(dist.get_world_size()))
            return destroy(*args, **kwargs)

        dist.destroy_process_group = recording_destroy
        if callable(target):
            result = target(rank)
            if isinstance(result, int) and result != 0:  # a command's exit status
                raise SystemExit(result)
        else:
            sys.argv = [str(target), *map(str, argv)]
            runpy.run_path(str(target), run_name="__main__")
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if code:
            report.write_text(f"exited with status {code}")
    except BaseException:
        code = 1
        report.write_text(traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@pytest.fixture
def fork_ranks(tmp_path_factory):
    """Run ``target`` as the ranks of one CPU process group (gloo), forked from this process.

    ``fork_ranks(target, argv=(), world_size=2, timeout=120)``: ``target`` is a function of
    the rank or a worker script (run as ``__main__`` with ``sys.argv = [script, *argv]``).
    Each rank gets torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...), so
    the code under test joins the group as under ``torchrun``; forking skips the launcher and
    a fresh interpreter per rank (about 1 s of CPU instead of 10-20 s for importing torch
    three times), which is what makes the fast counterparts of the ``torchrun`` tests fast.
    Fails, with each rank's traceback, unless every rank exits 0 after joining a group of
    ``world_size`` ranks.
    """
    import os
    import signal
    import time

    import torch.distributed as dist

    if not hasattr(os, "fork"):
        pytest.skip("forked ranks need os.fork (the torchrun variant, marked slow, runs anywhere)")

    def run(target, argv=(), world_size: int = 2, timeout: float = 120.0) -> None:
        assert not dist.is_initialized(), "a process group is open in the test process"
        folder = tmp_path_factory.mktemp("ranks")
        reports = [folder / f"rank{rank}.err" for rank in range(world_size)]
        port = _free_port()
        pids = []
        for rank in range(world_size):
            pid = os.fork()
            if pid == 0:
                _rank_main(target, argv, rank, world_size, port, reports[rank])
            pids.append(pid)
        codes: dict[int, int | None] = {}
        deadline = time.monotonic() + timeout
        while len(codes) < len(pids) and time.monotonic() < deadline:
            for rank, pid in enumerate(pids):
                if rank not in codes:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        codes[rank] = os.waitstatus_to_exitcode(status)
            time.sleep(0.02)
        for rank, pid in enumerate(pids):
            if rank not in codes:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                codes[rank] = None
        errors = {r: p.read_text() for r, p in enumerate(reports) if p.is_file()}
        assert all(code == 0 for code in codes.values()), (codes, errors)
        worlds = [p.with_name(f"{p.name}.world") for p in reports]
        seen = [int(p.read_text()) if p.is_file() else None for p in worlds]
        assert seen == [world_size] * world_size, f"ranks saw process groups of sizes {seen}"

    return run
