#!/usr/bin/env python3
"""A kessel remote worker in Python, with only the standard library.

It works jobs of one task through a kessel HTTP API (docs/http.md,
"Remote workers"): fetch with a lease (long-poll), log and report
progress, then complete with a result, or fail (transient or fatal).
Nothing here is kessel-specific but the JSON: any language can do this.

    python3 examples/remote_worker.py http://127.0.0.1:8080 shout --token ops-91c2

The handler of this example reads {"text": "..."} and returns it shouted;
a payload without "text" fails the job fatally. With --once it works one
round of jobs (waiting up to --wait seconds for them) and exits.
"""

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request


class LeaseLost(Exception):
    """The API no longer takes reports on this job (lapsed or cancelled)."""


class Api:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def post(self, path, body, timeout=30):
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        if self.token:
            req.add_header("authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as err:
            error = json.load(err).get("error", {})
            if err.code == 409:
                raise LeaseLost(error.get("message")) from None
            raise RuntimeError(f"{err.code} {error.get('code')}: {error.get('message')}") from None


def shout(job, report):
    """The example's handler: returns the payload's text in capitals."""
    text = job["payload"].get("text") if isinstance(job["payload"], dict) else None
    if not isinstance(text, str):
        raise ValueError("the payload has no `text`")
    report("log", {"message": "shouting", "data": {"chars": len(text)}})
    report("progress", {"current": 1, "total": 1})
    return {"text": text.upper(), "worker": "python"}


def work(api, job, lease):
    path = f"/remote/jobs/{job['id']}/"
    token = job["lease_token"]

    def report(what, body):
        return api.post(path + what, dict(body, lease_token=token))

    # Heartbeat every third of the lease while the handler runs.
    done = threading.Event()

    def heartbeat():
        while not done.wait(lease / 3):
            try:
                if report("heartbeat", {"lease": f"{lease}s"})["cancelled"]:
                    return
            except LeaseLost:
                return

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        result = shout(job, report)
    except ValueError as err:
        report("fail", {"message": str(err), "fatal": True})
    except Exception as err:  # anything else is worth a retry
        report("fail", {"message": repr(err), "fatal": False})
    else:
        report("complete", {"result": result})
    finally:
        done.set()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("api", help="the API's URL, e.g. http://127.0.0.1:8080/kessel")
    parser.add_argument("task", help="the task whose jobs to work")
    parser.add_argument("--token", default="", help="an admin bearer token")
    parser.add_argument("--lease", type=int, default=30, help="lease in seconds")
    parser.add_argument("--wait", type=int, default=20, help="long-poll in seconds")
    parser.add_argument("--once", action="store_true", help="work one round and exit")
    args = parser.parse_args()
    api = Api(args.api, args.token)
    while True:
        body = {"tasks": [args.task], "n": 1, "lease": f"{args.lease}s", "wait": f"{args.wait}s"}
        jobs = api.post("/remote/fetch", body, timeout=args.wait + 30)["jobs"]
        for job in jobs:
            try:
                work(api, job, args.lease)
            except LeaseLost as err:
                print(f"job {job['id']}: {err}", file=sys.stderr)
        if args.once:
            return 0 if jobs else 1


if __name__ == "__main__":
    sys.exit(main())
