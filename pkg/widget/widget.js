// Feedback widget of phoenix-feedback-proxy: thumbs up and down under an LLM
// answer, sent to the proxy's POST /feedback with a per-response token.
//
// Include it once per page (no dependencies, no build step):
//
//   <script src="https://feedback.example.com/widget.js" defer></script>
//
// and mark each answer with its provider response id and the token the
// page's backend minted for it (pkg/token, or POST /feedback/tokens):
//
//   <div data-feedback-response-id="chatcmpl-..." data-feedback-token="...">...</div>
//
// The buttons appear right after the element. Optional attributes:
// data-feedback-endpoint (the proxy's base URL; default: the origin this
// script was loaded from), data-feedback-identifier and data-feedback-name
// (by default the ones the token is bound to, read from it). Elements added
// later are found too.
// A single-page app may mount it itself:
//
//   FeedbackWidget.mount(el, {responseId, token, endpoint})
//
// The proxy must list the page's origin in --cors-allowed-origins. The
// widget sends no cookies (credentials: "omit"), uses no eval and no inline
// style attributes; its one <style> element carries the nonce of this
// script's tag, so a page with a nonce-based Content-Security-Policy keeps
// it. The element fires "feedback-widget:vote" (detail: {responseId, thumbs,
// status}) when the proxy took a vote and "feedback-widget:error" (detail:
// {responseId, thumbs, httpStatus, message}) when it did not.
(function () {
  "use strict";

  if (window.FeedbackWidget) {
    return; // included twice
  }

  var SVG = "http://www.w3.org/2000/svg";
  var ATTR = "data-feedback-response-id";
  var STYLE_ID = "feedback-widget-style";
  // A vote that takes longer than this is reported as not answered.
  var TIMEOUT_MS = 15000;
  var TEXT = {
    prompt: "Was this helpful?",
    up: "Good response",
    down: "Bad response",
    sending: "Sending\u2026",
    recorded: "Thanks \u2014 recorded",
    expired: "This feedback link has expired \u2014 reload the page to vote.",
    refused: "Feedback not accepted: ",
    tooMany: "Too many votes \u2014 try again in ",
    tooManyLater: "Too many votes \u2014 try again in a moment.",
    unavailable: "The feedback service is unavailable \u2014 try again later.",
    unreachable: "Could not reach the feedback service \u2014 try again.",
    timeout: "The feedback service did not answer \u2014 try again.",
    notSaved: "Feedback could not be saved: "
  };
  var CSS = [
    ".fbw{display:flex;flex-wrap:wrap;align-items:center;gap:.5em;margin:.5em 0;font-size:.9em}",
    ".fbw-prompt{opacity:.75}",
    ".fbw-group{display:inline-flex;gap:.35em}",
    ".fbw-btn{display:inline-flex;align-items:center;justify-content:center;width:2.2em;height:2.2em;",
    "padding:0;margin:0;border:1px solid #c3c7ce;border-radius:.5em;background:#fff;color:#4b5563;cursor:pointer;font:inherit}",
    ".fbw-btn:hover{background:#f3f4f6}",
    ".fbw-btn:focus-visible{outline:2px solid #2563eb;outline-offset:2px}",
    ".fbw-btn svg{width:1.15em;height:1.15em;pointer-events:none}",
    ".fbw-up[aria-pressed=true]{background:#dcfce7;border-color:#16a34a;color:#166534}",
    ".fbw-down[aria-pressed=true]{background:#fee2e2;border-color:#dc2626;color:#991b1b}",
    ".fbw-status[data-kind=ok]{color:#166534}",
    ".fbw-status[data-kind=error]{color:#b91c1c}"
  ].join("");

  var script = document.currentScript;
  var defaultEndpoint = originOf(script && script.src);
  var nonce = (script && (script.nonce || script.getAttribute("nonce"))) || "";
  var widgets = new WeakMap(); // element -> Widget
  var live = new Set(); // mounted widgets, for pagehide
  var counter = 0;

  function originOf(src) {
    try {
      return new URL(src, document.baseURI).origin;
    } catch (e) {
      return window.location.origin;
    }
  }

  function injectStyle() {
    if (document.getElementById(STYLE_ID)) {
      return;
    }
    var style = document.createElement("style");
    style.id = STYLE_ID;
    if (nonce) {
      style.nonce = nonce;
    }
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  // thumbIcon draws a thumb up; the down one is the same, turned over.
  function thumbIcon(down) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var g = document.createElementNS(SVG, "g");
    g.setAttribute("fill", "none");
    g.setAttribute("stroke", "currentColor");
    g.setAttribute("stroke-width", "1.8");
    g.setAttribute("stroke-linejoin", "round");
    if (down) {
      g.setAttribute("transform", "rotate(180 12 12)");
    }
    var cuff = document.createElementNS(SVG, "rect");
    cuff.setAttribute("x", "2.5");
    cuff.setAttribute("y", "10");
    cuff.setAttribute("width", "4");
    cuff.setAttribute("height", "10.5");
    cuff.setAttribute("rx", "1");
    var hand = document.createElementNS(SVG, "path");
    hand.setAttribute("d", "M6.5 10 L10.2 3.2 C11.6 3 12.9 4.1 12.6 5.6 L12 9 H18.6 C19.9 9 20.8 10.1 20.6 11.3 L19.3 18.8 C19.1 19.8 18.3 20.5 17.3 20.5 H6.5 Z");
    g.appendChild(cuff);
    g.appendChild(hand);
    svg.appendChild(g);
    return svg;
  }

  // scopeOf reads the identifier and names a token is scoped to from its
  // payload (docs/tokens.md: fbt1.<key id>.<payload>.<signature>, the
  // payload a base64url JSON object), so that a page need not repeat them.
  // Nothing is trusted from it: the proxy verifies the token.
  function scopeOf(tok) {
    var parts = tok.split(".");
    if (parts.length !== 4 || parts[0] !== "fbt1") {
      return {};
    }
    try {
      var b64 = parts[2].replace(/-/g, "+").replace(/_/g, "/");
      var bin = atob(b64 + "===".slice((b64.length + 3) % 4));
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) {
        bytes[i] = bin.charCodeAt(i);
      }
      var p = JSON.parse(new TextDecoder().decode(bytes));
      return { identifier: typeof p.identifier === "string" ? p.identifier : "", names: Array.isArray(p.names) ? p.names : [] };
    } catch (e) {
      return {};
    }
  }

  function WidgetError(message, httpStatus, retryAfter) {
    this.message = message;
    this.httpStatus = httpStatus || 0;
    this.retryAfter = retryAfter || 0;
  }

  function retryAfterSeconds(header) {
    if (!header) {
      return 0;
    }
    if (/^\d+$/.test(header.trim())) {
      return parseInt(header, 10);
    }
    var at = Date.parse(header);
    return isNaN(at) ? 0 : Math.max(1, Math.ceil((at - Date.now()) / 1000));
  }

  // errorFor turns a refusal of the proxy ({"error": {"status", "field",
  // "message"}}) into what the user reads.
  function errorFor(resp, body) {
    var msg = (body && body.error && body.error.message) || "";
    var field = body && body.error && body.error.field;
    if (resp.status === 401 || resp.status === 403) {
      if (/expired/i.test(msg)) {
        return new WidgetError(TEXT.expired, resp.status);
      }
      return new WidgetError(TEXT.refused + (msg || "the token was refused") + ".", resp.status);
    }
    if (resp.status === 429) {
      // Cross-origin, the header is readable only when the proxy exposes
      // it (Access-Control-Expose-Headers).
      var secs = retryAfterSeconds(resp.headers.get("Retry-After"));
      return new WidgetError(secs ? TEXT.tooMany + secs + " s." : TEXT.tooManyLater, 429, secs);
    }
    if (resp.status >= 500) {
      return new WidgetError(TEXT.unavailable, resp.status);
    }
    return new WidgetError(TEXT.refused + (field ? field + ": " : "") + (msg || "HTTP " + resp.status) + ".", resp.status);
  }

  function Widget(el, opts) {
    this.el = el;
    this.opts = {};
    this.recorded = ""; // the vote the proxy took: "", "up" or "down"
    this.wanted = ""; // the vote the user chose last
    this.sending = null; // the Promise of the send loop, while it runs
    this.retryAt = 0; // no request before this time (after a 429)
    this.update(opts);
    this.render();
  }

  Widget.prototype.update = function (opts) {
    var el = this.el;
    function pick(key, attr) {
      var v = opts && opts[key];
      if (v === undefined || v === null || v === "") {
        v = el.getAttribute(attr) || "";
      }
      return String(v);
    }
    var o = {
      responseId: pick("responseId", ATTR),
      token: pick("token", "data-feedback-token"),
      endpoint: pick("endpoint", "data-feedback-endpoint") || defaultEndpoint,
      identifier: pick("identifier", "data-feedback-identifier"),
      name: pick("name", "data-feedback-name")
    };
    if (!o.responseId) {
      throw new Error("FeedbackWidget: no response id (responseId, or the " + ATTR + " attribute)");
    }
    if (!o.token) {
      throw new Error("FeedbackWidget: no token for response " + o.responseId + " (token, or the data-feedback-token attribute)");
    }
    // A token bound to one identifier, or to one name, takes feedback
    // only with it.
    var scope = scopeOf(o.token);
    if (!o.identifier && scope.identifier) {
      o.identifier = scope.identifier;
    }
    if (!o.name && scope.names && scope.names.length === 1) {
      o.name = scope.names[0];
    }
    o.url = o.endpoint.replace(/\/+$/, "") + "/feedback";
    this.opts = o;
  };

  Widget.prototype.render = function () {
    if (!this.el.parentNode) {
      throw new Error("FeedbackWidget: the element of response " + this.opts.responseId + " is not in the page; the buttons go right after it");
    }
    injectStyle();
    var self = this;
    var id = "fbw-" + ++counter;
    var root = document.createElement("div");
    root.className = "fbw";
    root.setAttribute("data-feedback-widget", "");
    var prompt = document.createElement("span");
    prompt.className = "fbw-prompt";
    prompt.id = id + "-prompt";
    prompt.textContent = TEXT.prompt;
    var group = document.createElement("span");
    group.className = "fbw-group";
    group.setAttribute("role", "group");
    group.setAttribute("aria-labelledby", prompt.id);
    this.buttons = {};
    ["up", "down"].forEach(function (thumbs) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "fbw-btn fbw-" + thumbs;
      b.setAttribute("aria-label", TEXT[thumbs]);
      b.setAttribute("aria-pressed", "false");
      b.title = TEXT[thumbs];
      b.appendChild(thumbIcon(thumbs === "down"));
      b.addEventListener("click", function () {
        self.vote(thumbs);
      });
      group.appendChild(b);
      self.buttons[thumbs] = b;
    });
    var status = document.createElement("span");
    status.className = "fbw-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    root.appendChild(prompt);
    root.appendChild(group);
    root.appendChild(status);
    this.root = root;
    this.statusEl = status;
    this.el.insertAdjacentElement("afterend", root);
  };

  Widget.prototype.show = function (text, kind) {
    this.statusEl.textContent = text;
    this.statusEl.setAttribute("data-kind", kind);
  };

  Widget.prototype.press = function (thumbs) {
    this.buttons.up.setAttribute("aria-pressed", String(thumbs === "up"));
    this.buttons.down.setAttribute("aria-pressed", String(thumbs === "down"));
  };

  // vote records thumbs ("up" or "down"). Votes are sent one at a time, in
  // order, the last one winning: a click while a vote is on its way is sent
  // after it. The same thumb twice is one vote; the other thumb changes it
  // (the proxy keeps one annotation per response, name and identifier).
  Widget.prototype.vote = function (thumbs) {
    if (thumbs !== "up" && thumbs !== "down") {
      return Promise.reject(new Error('FeedbackWidget: expected "up" or "down", got ' + thumbs));
    }
    if (Date.now() < this.retryAt) {
      var secs = Math.ceil((this.retryAt - Date.now()) / 1000);
      this.show(TEXT.tooMany + secs + " s.", "error");
      return Promise.resolve(undefined);
    }
    if (thumbs === this.wanted && (this.sending || thumbs === this.recorded)) {
      return this.sending || Promise.resolve(undefined); // the same thumb again
    }
    this.wanted = thumbs;
    this.press(thumbs);
    if (!this.sending) {
      var self = this;
      this.sending = this.sendLoop().then(function (st) {
        self.sending = null;
        return st;
      });
    }
    return this.sending;
  };

  Widget.prototype.sendLoop = async function () {
    var st;
    while (this.wanted && this.wanted !== this.recorded) {
      var thumbs = this.wanted;
      this.show(TEXT.sending, "busy");
      try {
        st = await this.send(thumbs);
      } catch (err) {
        var e = err instanceof WidgetError ? err : new WidgetError(TEXT.unreachable);
        if (e.retryAfter) {
          this.retryAt = Date.now() + e.retryAfter * 1000;
        }
        this.wanted = this.recorded;
        this.press(this.recorded);
        this.show(e.message, "error");
        this.emit("error", { thumbs: thumbs, httpStatus: e.httpStatus, message: e.message });
        return undefined;
      }
      this.recorded = thumbs;
    }
    this.press(this.recorded);
    this.show(TEXT.recorded, "ok");
    this.emit("vote", { thumbs: this.recorded, status: st });
    return st;
  };

  Widget.prototype.body = function (thumbs, withToken) {
    var b = { response_id: this.opts.responseId, thumbs: thumbs };
    if (this.opts.identifier) {
      b.identifier = this.opts.identifier;
    }
    if (this.opts.name) {
      b.name = this.opts.name;
    }
    if (withToken) {
      b.token = this.opts.token;
    }
    return JSON.stringify(b);
  };

  Widget.prototype.send = async function (thumbs) {
    var ctrl = new AbortController();
    var timer = setTimeout(function () {
      ctrl.abort();
    }, TIMEOUT_MS);
    var resp;
    try {
      resp = await fetch(this.opts.url, {
        method: "POST",
        mode: "cors",
        credentials: "omit",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + this.opts.token },
        body: this.body(thumbs, false),
        signal: ctrl.signal
      });
    } catch (err) {
      throw new WidgetError(err && err.name === "AbortError" ? TEXT.timeout : TEXT.unreachable);
    } finally {
      clearTimeout(timer);
    }
    var body = null;
    try {
      body = await resp.json();
    } catch (e) {
      // not JSON: the status alone speaks
    }
    if (!resp.ok) {
      throw errorFor(resp, body);
    }
    var state = body && body.state;
    if (state === "failed" || state === "expired") {
      throw new WidgetError(TEXT.notSaved + ((body && body.reason) || state) + ".", resp.status);
    }
    return body;
  };

  // beacon sends a vote not yet confirmed as the page goes away. A beacon
  // cannot carry headers, so the token travels in the body (sent as
  // text/plain, which needs no CORS preflight).
  Widget.prototype.beacon = function () {
    if (!this.wanted || this.wanted === this.recorded || !navigator.sendBeacon) {
      return;
    }
    if (navigator.sendBeacon(this.opts.url, this.body(this.wanted, true))) {
      this.recorded = this.wanted;
    }
  };

  Widget.prototype.emit = function (what, detail) {
    detail.responseId = this.opts.responseId;
    this.el.dispatchEvent(new CustomEvent("feedback-widget:" + what, { bubbles: true, detail: detail }));
  };

  Widget.prototype.destroy = function () {
    if (this.root && this.root.parentNode) {
      this.root.parentNode.removeChild(this.root);
    }
    widgets.delete(this.el);
    live.delete(this);
  };

  // mount puts the buttons after el, once: mounting the same element again
  // updates its options (a fresh token) and returns the same controller.
  function mount(el, opts) {
    if (!el || el.nodeType !== 1) {
      throw new Error("FeedbackWidget.mount: expected an element");
    }
    var w = widgets.get(el);
    if (w) {
      w.update(opts);
      return controller(w);
    }
    w = new Widget(el, opts);
    widgets.set(el, w);
    live.add(w);
    return controller(w);
  }

  function controller(w) {
    return {
      element: w.root,
      vote: function (thumbs) {
        return w.vote(thumbs);
      },
      destroy: function () {
        w.destroy();
      }
    };
  }

  // scan mounts every marked element under root (default: the document).
  function scan(root) {
    var found = [];
    root = root || document;
    if (root.nodeType === 1 && root.hasAttribute(ATTR)) {
      found.push(root);
    }
    if (root.querySelectorAll) {
      Array.prototype.push.apply(found, root.querySelectorAll("[" + ATTR + "]"));
    }
    found.forEach(function (el) {
      if (widgets.has(el)) {
        return;
      }
      try {
        mount(el);
      } catch (err) {
        console.warn(err.message);
      }
    });
  }

  window.FeedbackWidget = {
    version: "1",
    endpoint: defaultEndpoint,
    mount: mount,
    scan: scan
  };

  function start() {
    scan(document);
    if (window.MutationObserver) {
      new MutationObserver(function (records) {
        records.forEach(function (r) {
          r.addedNodes.forEach(function (n) {
            if (n.nodeType === 1) {
              scan(n);
            }
          });
        });
      }).observe(document.documentElement, { childList: true, subtree: true });
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  window.addEventListener("pagehide", function () {
    live.forEach(function (w) {
      w.beacon();
    });
  });
})();
