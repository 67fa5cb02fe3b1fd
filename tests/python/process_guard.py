"""Runs a server command for a test and cleans up after it, whatever happens to the test.

Usage: process_guard.py SCRATCH_DIR COMMAND [ARGS...]

The command runs in its own process group (MLflow servers start uvicorn and helper processes)
with its output in SCRATCH_DIR/server.log. The guard reads its stdin until end of file: the test
process closes it when it drops its handle, and the operating system closes it when the test
process ends in any way (a panic, an abort, a static handle that is never dropped). Then the whole
process group is stopped and SCRATCH_DIR removed.

If the command exits on its own first, the guard prints the end of its log on stdout (the test
shows it), removes SCRATCH_DIR and exits with the command's code.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 10
LOG_TAIL_BYTES = 8000


def stop_group(process):
    """Stops the command and every process it started."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            process.poll()  # reap the leader so the group can disappear
            time.sleep(0.1)


def main():
    scratch, command = sys.argv[1], sys.argv[2:]
    log_path = os.path.join(scratch, "server.log")
    log = open(log_path, "wb")
    if os.name == "nt":
        flags = subprocess.CREATE_NEW_PROCESS_GROUP
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, creationflags=flags)
    else:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    released = threading.Event()

    def wait_for_release():
        sys.stdin.buffer.read()
        released.set()
        stop_group(process)

    releaser = threading.Thread(target=wait_for_release, daemon=True)
    releaser.start()
    code = process.wait()
    if released.is_set():
        releaser.join()  # the group's other processes may still be stopping
    else:
        stop_group(process)
        log.close()
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            sys.stdout.write(f.read().decode("utf-8", "replace"))
        sys.stdout.flush()
    log.close()
    shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(code if not released.is_set() else 0)


if __name__ == "__main__":
    main()
