// The demo page: asks the demo's backend (POST /api/ask), shows the answer,
// and mounts the proxy's feedback widget under it with the answer's token.
(function () {
  "use strict";

  var form = document.getElementById("ask");
  var input = document.getElementById("question");
  var send = document.getElementById("send");
  var log = document.getElementById("log");
  var error = document.getElementById("error");

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  function el(tag, className, text) {
    var e = document.createElement(tag);
    if (className) {
      e.className = className;
    }
    if (text !== undefined) {
      e.textContent = text;
    }
    return e;
  }

  async function ask(question) {
    var resp = await fetch("/api/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ question: question })
    });
    var body = null;
    try {
      body = await resp.json();
    } catch (e) {
      // not JSON
    }
    if (!resp.ok) {
      throw new Error((body && body.error && body.error.message) || "the demo answered HTTP " + resp.status);
    }
    return body;
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var question = input.value.trim() || input.placeholder;
    showError("");
    send.disabled = true;

    var turn = el("li", "turn pending");
    var q = el("p", "q");
    q.appendChild(el("strong", "", "You: "));
    q.appendChild(document.createTextNode(question));
    var a = el("p", "a", "Thinking\u2026");
    turn.appendChild(q);
    turn.appendChild(a);
    log.appendChild(turn);

    try {
      var r = await ask(question);
      turn.classList.remove("pending");
      a.textContent = r.answer;
      turn.appendChild(el("p", "meta", "response id " + r.response_id + " \u00b7 " + r.model));
      if (window.FeedbackWidget) {
        // The widget goes right after the answer.
        window.FeedbackWidget.mount(a, {
          responseId: r.response_id,
          token: r.token,
          endpoint: r.feedback_endpoint
        });
      } else {
        showError("The feedback widget did not load from " + document.body.dataset.widgetUrl +
          ": is the proxy running, with this page's origin in --cors-allowed-origins?");
      }
      input.value = "";
    } catch (err) {
      turn.remove();
      showError(err.message);
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
})();
