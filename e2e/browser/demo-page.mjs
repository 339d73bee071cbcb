// Drives the demo's chat page (`demo web`) in headless Chromium, as a user
// would: asks a question, waits for the answer and the feedback widget under
// it, votes thumbs up with the keyboard, changes the vote to thumbs down with
// the mouse, checks what the widget shows and announces, takes a screenshot,
// checks that the widget reports a refused token, and leaves the page while
// a vote on a second answer is on its way (the beacon must carry it).
//
//   node demo-page.mjs --url http://127.0.0.1:8090/ --screenshot out.png [--chromium /usr/bin/chromium]
//                      [--question "..."] [--pause] [--timeout-ms 60000]
//
// It prints one JSON object a line on stdout: {"event":"answered",
// "response_id","identifier"}, {"event":"voted","thumbs":"up"}, then
// {"event":"voted","thumbs":"down"}, {"event":"refused","message"} (a tampered
// token), {"event":"left","response_id","thumbs"} (a second answer's vote,
// sent by navigator.sendBeacon as the page went away) and
// {"event":"done","screenshot"}. With
// --pause it waits for a line on stdin after the first vote, so that the
// caller can check Phoenix in between. It exits 1 with the reason on stderr
// when anything is not as expected, including any error the page logged (a
// Content-Security-Policy violation, a failed request).
//
// The browser is Debian's chromium (scripts/browser.sh install); playwright-core
// downloads none.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { execFileSync } from "node:child_process";
import { parseArgs } from "node:util";

const RECORDED = "Thanks \u2014 recorded";
const WIDGET = "[data-feedback-widget]";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.CHROMIUM || "chromium" },
    question: { type: "string", default: "Which ocean contains Bouvet Island?" },
    pause: { type: "boolean", default: false },
    "timeout-ms": { type: "string", default: "60000" },
  },
});
if (!opts.url || !opts.screenshot) {
  console.error("demo-page.mjs: --url and --screenshot are required");
  process.exit(2);
}
const timeout = Number(opts["timeout-ms"]);

function emit(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

function fail(msg) {
  throw new Error(msg);
}

// executable resolves a name on PATH: playwright wants a path.
function executable(name) {
  if (name.includes("/")) {
    return name;
  }
  try {
    return execFileSync("sh", ["-c", 'command -v "$0"', name], { encoding: "utf8" }).trim();
  } catch {
    fail(`${name} not found on PATH: run scripts/browser.sh install`);
  }
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function main() {
  const browser = await chromium.launch({
    executablePath: executable(opts.chromium),
    headless: true,
    // Chromium's sandbox refuses to run as root (CI, containers).
    args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
    timeout,
  });
  const pageErrors = [];
  try {
    const context = await browser.newContext({ viewport: { width: 960, height: 560 }, deviceScaleFactor: 1 });
    context.setDefaultTimeout(timeout);
    const page = await context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") {
        pageErrors.push(`console ${m.type()}: ${m.text()}`);
      }
    });
    page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => pageErrors.push(`request failed: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));

    await page.goto(opts.url, { waitUntil: "load" });
    if (!(await page.evaluate(() => !!window.FeedbackWidget))) {
      fail(`the widget's script did not load on ${opts.url}: ${pageErrors.join("; ") || "no error logged"}`);
    }
    // Every vote the widget reports, in order.
    await page.evaluate(() => {
      window.__votes = [];
      document.addEventListener("feedback-widget:vote", (e) => window.__votes.push(e.detail.thumbs));
      document.addEventListener("feedback-widget:error", (e) => window.__votes.push("error: " + e.detail.message));
    });

    // Ask.
    const answered = page.waitForResponse((r) => r.url().endsWith("/api/ask"));
    await page.getByLabel("Your question").fill(opts.question);
    await page.getByLabel("Your question").press("Enter");
    const resp = await answered;
    const answer = await resp.json();
    if (!resp.ok()) {
      fail(`POST /api/ask answered ${resp.status()}: ${JSON.stringify(answer)}`);
    }
    emit({ event: "answered", response_id: answer.response_id, identifier: answer.identifier });

    const widget = page.locator(WIDGET).first();
    await widget.waitFor();
    const up = widget.getByRole("button", { name: "Good response" });
    const down = widget.getByRole("button", { name: "Bad response" });
    const status = widget.getByRole("status");
    await checkPressed(up, down, "false", "false");
    if ((await status.getAttribute("aria-live")) !== "polite") {
      fail("the widget's status region is not aria-live=polite");
    }
    // The widget's <style> got past the page's Content-Security-Policy (by
    // the nonce): a styled button shows a pointer, a bare one does not.
    const cursor = await up.evaluate((b) => getComputedStyle(b).cursor);
    if (cursor !== "pointer") {
      fail(`the widget's buttons are unstyled (cursor ${cursor}): its <style> was blocked`);
    }
    // It sits right under the answer.
    const after = await page.locator(".turn .a").first().evaluate((a) => a.nextElementSibling?.hasAttribute("data-feedback-widget"));
    if (!after) {
      fail("the widget is not right after the answer");
    }

    // Thumbs up, with the keyboard.
    await up.focus();
    await page.keyboard.press("Enter");
    await waitVotes(page, ["up"]);
    await waitStatus(status, RECORDED);
    await checkPressed(up, down, "true", "false");
    emit({ event: "voted", thumbs: "up" });
    if (opts.pause) {
      const next = await stdinLines.next();
      if (next.done) {
        fail("stdin closed while pausing after the first vote");
      }
    }

    // The same thumb again is the same vote: nothing is sent.
    await up.click();
    // Changed: thumbs down, with the mouse.
    await down.click();
    await waitVotes(page, ["up", "down"]);
    await waitStatus(status, RECORDED);
    await checkPressed(up, down, "false", "true");
    emit({ event: "voted", thumbs: "down" });

    await page.mouse.move(0, 0);
    await page.screenshot({ path: opts.screenshot });

    // Markup alone mounts the widget too; a token that does not verify is
    // refused by the proxy, and the widget says so and keeps no vote.
    const tampered = answer.token.slice(0, -4) + (answer.token.endsWith("AAAA") ? "BBBB" : "AAAA");
    await page.evaluate(
      ({ id, token, endpoint }) => {
        const el = document.createElement("p");
        el.id = "tampered";
        el.textContent = "(a copy with a tampered token)";
        el.setAttribute("data-feedback-response-id", id);
        el.setAttribute("data-feedback-token", token);
        el.setAttribute("data-feedback-endpoint", endpoint);
        document.querySelector("main").appendChild(el);
      },
      { id: answer.response_id, token: tampered, endpoint: answer.feedback_endpoint },
    );
    const bad = page.locator(`#tampered + ${WIDGET}`);
    await bad.waitFor();
    await bad.getByRole("button", { name: "Good response" }).click();
    await page.waitForFunction(() => window.__votes.length === 3);
    const refusal = await page.evaluate(() => window.__votes[2]);
    const badStatus = (await bad.getByRole("status").textContent()) || "";
    if (!refusal.startsWith("error: Feedback not accepted") || !badStatus.startsWith("Feedback not accepted")) {
      fail(`a tampered token: the widget reported ${JSON.stringify(refusal)} and shows ${JSON.stringify(badStatus)}, want "Feedback not accepted: ..."`);
    }
    await checkPressed(bad.getByRole("button", { name: "Good response" }), bad.getByRole("button", { name: "Bad response" }), "false", "false");
    // The browser logs the refused request (401) itself; anything else is an error.
    const unexpected = pageErrors.filter((e) => !/status of 40[13]/.test(e));
    if (unexpected.length) {
      fail(`the page logged errors:\n  ${unexpected.join("\n  ")}`);
    }
    emit({ event: "refused", message: badStatus });

    // A vote still on its way when the page goes away leaves by
    // navigator.sendBeacon, the token in its text/plain body: hold the
    // widget's fetch (playwright does not route beacons), vote, leave.
    const second = page.waitForResponse((r) => r.url().endsWith("/api/ask"));
    await page.getByLabel("Your question").fill("And which continent is nearest to it?");
    await page.getByLabel("Your question").press("Enter");
    const answer2 = await (await second).json();
    const held = [];
    await page.route(answer2.feedback_endpoint + "/feedback", (route) => held.push(route));
    const widget2 = page.locator(WIDGET).nth(1);
    await widget2.getByRole("button", { name: "Good response" }).click();
    await waitStatus(widget2.getByRole("status"), "Sending\u2026");
    if (held.length !== 1) {
      fail(`${held.length} requests held, want the widget's one fetch`);
    }
    await page.goto("about:blank");
    emit({ event: "left", response_id: answer2.response_id, thumbs: "up" });
    emit({ event: "done", screenshot: opts.screenshot });
  } finally {
    await browser.close();
  }
}

async function checkPressed(up, down, wantUp, wantDown) {
  const got = [await up.getAttribute("aria-pressed"), await down.getAttribute("aria-pressed")];
  if (got[0] !== wantUp || got[1] !== wantDown) {
    fail(`aria-pressed up=${got[0]} down=${got[1]}, want up=${wantUp} down=${wantDown}`);
  }
}

async function waitVotes(page, want) {
  try {
    await page.waitForFunction((n) => window.__votes.length >= n, want.length, { timeout });
  } catch (e) {
    fail(`the widget reported ${JSON.stringify(await page.evaluate(() => window.__votes))}, want ${JSON.stringify(want)}`);
  }
  const got = await page.evaluate(() => window.__votes);
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`the widget reported ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

async function waitStatus(status, want) {
  const deadline = Date.now() + timeout;
  let got;
  while (Date.now() < deadline) {
    got = await status.textContent();
    if (got === want) {
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  fail(`the widget shows ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error("demo-page.mjs: " + (err && err.message ? err.message : err));
    process.exit(1);
  },
);
