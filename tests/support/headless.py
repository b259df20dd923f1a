"""Loads a page in headless Chromium and reports what it shows and what went wrong.

Drives Chromium through the DevTools protocol over a pipe (--remote-debugging-pipe: fd 3
carries commands to the browser, fd 4 its answers and events, each message a JSON text
ended by a NUL byte), so nothing beyond Python's standard library is needed.

Usage: headless.py CHROMIUM URL AUTHORIZATION WAIT_JS READ_JS TIMEOUT_SECONDS
  AUTHORIZATION  sent as the Authorization header of every request ("" for none)
  WAIT_JS        an expression polled until it is true (the page is ready)
  READ_JS        an expression whose JSON value is reported once it is

Prints one JSON object: {"ready": whether WAIT_JS became true in time, "value": READ_JS's
value, "errors": [console errors, uncaught exceptions, failed loads], "statuses": {url: HTTP
status}}. Exits non-zero when the browser cannot be driven or the page does not load.
"""

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time


def moved_high(fd):
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    def __init__(self, chromium, profile, log):
        to_browser_read, self.to_browser = os.pipe()
        self.from_browser, from_browser_write = os.pipe()
        # Out of the way of 3 and 4 first, so that neither dup2 below clobbers the other's
        # source (and both targets lose close-on-exec).
        to_browser_read = moved_high(to_browser_read)
        from_browser_write = moved_high(from_browser_write)

        def wire_pipes():
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                "--user-data-dir=" + profile,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            close_fds=False,
            preexec_fn=wire_pipes,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.buffer = b""
        self.next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def receive(self, deadline):
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the browser in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 65536)
                if not chunk:
                    raise EOFError("the browser went away")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, deadline, method, params=None, session=None):
        wanted = self.send(method, params, session)
        while True:
            message = self.receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, deadline, session, expression):
        result = self.call(
            deadline,
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self):
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
            self.process.wait()


def problems(events):
    """The errors a user would see in the browser's console."""
    found = []
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            found.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            args = [a.get("value", a.get("description")) for a in params.get("args", [])]
            found.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            found.append(f"{entry['source']}: {entry['text']} ({entry.get('url', '')})")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            found.append(f"load failed: {params.get('errorText')}")
    return found


def main():
    chromium, url, authorization, wait_js, read_js, timeout = sys.argv[1:7]
    deadline = time.monotonic() + float(timeout)
    profile = tempfile.mkdtemp(prefix="status-page-chromium-")
    log = open(os.path.join(profile, "chromium.log"), "w+")
    browser = Browser(chromium, profile, log)
    try:
        target = browser.call(deadline, "Target.createTarget", {"url": "about:blank"})
        attached = browser.call(
            deadline,
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
        )
        session = attached["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.call(deadline, domain + ".enable", session=session)
        if authorization:
            browser.call(
                deadline,
                "Network.setExtraHTTPHeaders",
                {"headers": {"Authorization": authorization}},
                session,
            )
        navigated = browser.call(deadline, "Page.navigate", {"url": url}, session)
        if navigated.get("errorText"):
            raise RuntimeError(f"navigation failed: {navigated['errorText']}")
        ready = False
        try:
            while not ready:
                try:
                    ready = bool(browser.evaluate(deadline, session, wait_js))
                except RuntimeError:
                    # The page's document is not there yet (navigation still committing).
                    pass
                if not ready:
                    time.sleep(0.05)
        except TimeoutError:
            # Reported with what went wrong meanwhile, rather than as a bare timeout.
            deadline = time.monotonic() + 5
        value = browser.evaluate(deadline, session, read_js)
        # Whatever is still in the pipe (late console messages) counts too.
        settle = time.monotonic() + 0.5
        try:
            while True:
                message = browser.receive(settle)
                if "method" in message:
                    browser.events.append(message)
        except TimeoutError:
            pass
        statuses = {
            e["params"]["response"]["url"]: e["params"]["response"]["status"]
            for e in browser.events
            if e["method"] == "Network.responseReceived"
        }
        report = {
            "ready": ready,
            "value": value,
            "errors": problems(browser.events),
            "statuses": statuses,
        }
        print(json.dumps(report))
    except Exception:
        log.flush()
        log.seek(0)
        lines = [line for line in log.read().splitlines() if "dbus" not in line]
        print("chromium's last words:\n" + "\n".join(lines[-30:]), file=sys.stderr)
        raise
    finally:
        browser.close()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
