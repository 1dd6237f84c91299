"""What the interop scripts share: pass/fail bookkeeping and starting the broker binary."""
import subprocess
import sys
import time

results = {"passed": 0, "failed": 0}


def check(what, cond, detail=""):
    """Records one check and prints it."""
    if cond:
        results["passed"] += 1
        print(f"ok   {what}")
    else:
        results["failed"] += 1
        print(f"FAIL {what} {detail}")


def start_broker(binary, brokers=3, partitions=3):
    """Starts the broker binary on free ports; returns (process, bootstrap servers)."""
    proc = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--brokers", str(brokers), "--partitions", str(partitions),
         "--log-level", "warn"],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("bootstrap.servers="):
            return proc, line.strip().split("=", 1)[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("broker did not start")


def finish():
    """Prints the summary line and exits non-zero if any check failed."""
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)
