// flipguard dashboard: promote and cancel actions, live job progress. Vanilla JS, same-origin
// requests to the REST API only (so an auth header or cookie can be added in one place: api()).
(function () {
  "use strict";

  var POLL_MS = 2000;
  var LIVE = ["queued", "running", "evaluating"];

  // A JSON request to the REST API; rejects with the API's error message ({detail: [{msg}]}).
  function api(path, options) {
    options = options || {};
    var headers = { Accept: "application/json" };
    if (options.body) headers["Content-Type"] = "application/json";
    return fetch(path, {
      method: options.method || "GET",
      body: options.body,
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (ignored) { body = null; }
        if (!response.ok) {
          var detail = body && Array.isArray(body.detail) ? body.detail[0] : null;
          var message = detail && detail.msg ? detail.msg : response.status + " " + response.statusText;
          throw new Error(message);
        }
        return body;
      });
    });
  }

  function badge(status) {
    var span = document.createElement("span");
    span.className = "badge status-" + status;
    span.textContent = status;
    return span;
  }

  function showError(element, message) {
    element.textContent = message;
    element.hidden = !message;
  }

  function duration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "—";
    seconds = Math.round(seconds);
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + s + " s";
    return s + " s";
  }

  // ---- model page: promotion -------------------------------------------------------------
  // The form only opens the confirmation page (a GET): nothing is promoted from here. The
  // script shows the reason field when forcing and asks for a reason before leaving the page.
  function setUpPromote() {
    var form = document.getElementById("promote-form");
    if (!form) return;
    var force = document.getElementById("promote-force");
    var field = document.getElementById("reason-field");
    var reason = document.getElementById("promote-reason");
    var error = document.getElementById("promote-error");
    function sync() {
      field.hidden = !force.checked;
      reason.required = force.checked;
    }
    force.addEventListener("change", sync);
    sync();
    window.addEventListener("pageshow", function () { reason.disabled = false; sync(); });
    form.addEventListener("submit", function (event) {
      reason.classList.remove("invalid");
      if (force.checked && !reason.value.trim()) {
        event.preventDefault();
        reason.classList.add("invalid");
        reason.focus();
        showError(error, "A forced promotion needs a reason: it is recorded with the promotion.");
        return;
      }
      if (!force.checked) reason.disabled = true; // no empty reason in the confirmation's URL
      showError(error, "");
    });
  }

  // ---- job page: live progress, ETA, curves, cancel --------------------------------------
  function setUpJob() {
    var root = document.getElementById("job");
    if (!root) return;
    var jobId = root.dataset.jobId;
    var epochsSeen = Number(root.dataset.epochsSeen || 0);
    var elapsed = document.getElementById("job-elapsed");
    var started = elapsed.dataset.started ? new Date(elapsed.dataset.started) : null;
    var finished = elapsed.dataset.finished ? new Date(elapsed.dataset.finished) : null;
    var phaseStart = null; // {phase, time, progress}: the first sample seen of the current phase

    function showElapsed() {
      if (!started) return;
      elapsed.textContent = duration(((finished || new Date()) - started) / 1000);
    }
    showElapsed();

    var cancel = document.getElementById("cancel-button");
    if (cancel) {
      cancel.addEventListener("click", function () {
        if (!window.confirm("Cancel update job #" + jobId + "? Its training stops and nothing is registered.")) return;
        cancel.disabled = true;
        cancel.textContent = "Cancelling…";
        api("/updates/" + jobId + "/cancel", { method: "POST" }).then(function (job) {
          render(job);
          schedule();
        }, function (failure) {
          showError(document.getElementById("cancel-error"), "Refused: " + failure.message);
          cancel.disabled = false;
          cancel.textContent = "Cancel job";
        });
      });
    }

    function eta(job, now) {
      if (!phaseStart || phaseStart.phase !== job.phase || job.progress < phaseStart.progress) {
        phaseStart = { phase: job.phase, time: now, progress: job.progress };
        return null;
      }
      var done = job.progress - phaseStart.progress;
      var seconds = (now - phaseStart.time) / 1000;
      if (done <= 0 || seconds <= 0) return null;
      return (1 - job.progress) * seconds / done;
    }

    function render(job) {
      var now = Date.now();
      document.getElementById("job-status").replaceChildren(badge(job.status));
      document.getElementById("job-phase").textContent = job.phase || "—";
      document.getElementById("job-epoch").textContent =
        (job.epoch || "—") + " / " + (job.epochs || "—");
      var percent = Math.round(job.progress * 1000) / 10;
      var fill = document.getElementById("progress-fill");
      fill.setAttribute("width", String(Math.round(job.progress * 1000)));
      fill.setAttribute("class", "fill status-" + job.status);
      fill.parentElement.setAttribute("aria-valuenow", String(Math.round(percent)));
      document.getElementById("progress-label").textContent = Math.round(percent) + "%";
      if (job.heartbeat_at) {
        document.getElementById("job-heartbeat").textContent = new Date(job.heartbeat_at).toLocaleString();
      }
      if (job.started_at && !started) started = new Date(job.started_at);
      if (job.finished_at) finished = new Date(job.finished_at);
      showElapsed();
      var remaining = LIVE.indexOf(job.status) >= 0 && job.status !== "queued" ? eta(job, now) : null;
      document.getElementById("job-eta").textContent =
        job.status === "queued" ? "waiting for a worker" :
        remaining === null ? (LIVE.indexOf(job.status) >= 0 ? "estimating…" : "—") : "≈ " + duration(remaining);
      if (cancel && job.cancel_requested) {
        cancel.disabled = true;
        cancel.textContent = "Cancelling…";
      }
    }

    function refreshCurves() {
      return fetch("/dashboard/jobs/" + jobId + "/curves", { credentials: "same-origin", cache: "no-store" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          var current = document.getElementById("curves");
          if (!html || !current) return;
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("#curves");
          if (fresh) current.replaceWith(fresh);
        });
    }

    var timer = null;
    function schedule() {
      if (timer === null) timer = window.setTimeout(poll, POLL_MS);
    }
    function poll() {
      timer = null;
      api("/updates/" + jobId).then(function (job) {
        render(job);
        var epochs = (job.events || []).filter(function (e) { return e.epoch !== null; }).length;
        var work = epochs !== epochsSeen ? refreshCurves() : Promise.resolve();
        epochsSeen = epochs;
        if (LIVE.indexOf(job.status) < 0) {
          // Finished: reload once so the page shows the result, the error and the final curves.
          work.then(function () { window.location.reload(); });
          return;
        }
        schedule();
      }, function () {
        schedule(); // a transient failure (server restart): try again
      });
    }
    if (LIVE.indexOf(root.dataset.status) >= 0) schedule();
  }

  // ---- overview: progress bars of live jobs ----------------------------------------------
  function setUpOverview() {
    var bars = Array.prototype.slice.call(document.querySelectorAll(".progress.live[data-job-progress]"));
    if (!bars.length) return;
    function poll() {
      Promise.all(bars.map(function (bar) {
        var id = bar.dataset.jobProgress;
        return api("/updates/" + id).then(function (job) {
          var fill = bar.querySelector(".fill");
          fill.setAttribute("width", String(Math.round(job.progress * 1000)));
          fill.setAttribute("class", "fill status-" + job.status);
          bar.querySelector(".progress-label").textContent =
            (job.phase || job.status) + " · " + Math.round(job.progress * 100) + "%";
          var cell = document.querySelector('[data-job-status="' + id + '"]');
          if (cell) cell.replaceChildren(badge(job.status));
          return LIVE.indexOf(job.status) >= 0;
        }, function () { return true; });
      })).then(function (live) {
        if (live.some(function (still) { return !still; })) window.location.reload();
        else window.setTimeout(poll, POLL_MS);
      });
    }
    window.setTimeout(poll, POLL_MS);
  }

  setUpPromote();
  setUpJob();
  setUpOverview();
})();
