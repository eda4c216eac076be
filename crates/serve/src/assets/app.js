// loopscale serve: the pages' script, embedded in the binary (no library, nothing from a CDN).
// The overview and the curves stay live through the server-sent events of /api/stream:
// `overview` carries the whole overview when it changed, `metrics` the newly logged steps.
"use strict";
(function () {
  // Errors are kept on the page too, where the browser test reads them.
  var errors = [];
  window.addEventListener("error", function (e) {
    errors.push(String(e.message));
    document.documentElement.setAttribute("data-js-errors", errors.join(" | "));
  });

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  function fmt(x, digits) {
    return x === null || x === undefined ? "" : Number(x).toFixed(digits);
  }
  function si(x) {
    if (x === null || x === undefined) return "";
    var units = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(x) >= units[i][0]) return (x / units[i][0]).toFixed(2).replace(/\.?0+$/, "") + units[i][1];
    }
    return Number(x).toFixed(0);
  }

  // One stream per page; the dot in the header says whether it is connected.
  var listeners = { overview: [], metrics: [] };
  function stream() {
    if (!window.EventSource) return;
    var dot = document.getElementById("live");
    var source = new EventSource("/api/stream");
    source.onopen = function () { if (dot) { dot.className = "live on"; dot.title = "live"; } };
    source.onerror = function () { if (dot) { dot.className = "live off"; dot.title = "reconnecting"; } };
    Object.keys(listeners).forEach(function (name) {
      source.addEventListener(name, function (e) {
        var data = JSON.parse(e.data);
        listeners[name].forEach(function (f) { f(data); });
      });
    });
  }

  // The overview's sort: a column index and direction, kept across live updates.
  var sortBy = null, sortDown = false;
  function cellValue(tr, i) {
    var t = tr.cells[i] ? tr.cells[i].textContent : "";
    var n = parseFloat(t);
    return isNaN(n) || !/^[-\d.]/.test(t) ? t.toLowerCase() : n;
  }
  function sortRows(body) {
    if (sortBy === null) return;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, sortBy), y = cellValue(b, sortBy);
      var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
      return sortDown ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function renderOverview(o) {
    var summary = document.getElementById("summary");
    var note = document.getElementById("note");
    if (o.note) { note.hidden = false; note.textContent = o.note; } else { note.hidden = true; }
    var counts = Object.keys(o.counts).map(function (k) { return o.counts[k] + " " + k; }).join(", ");
    summary.textContent = o.runs.length + " runs: " + (counts || "none yet") + " · " +
      Math.round(100 * o.done_fraction) + "% of the sweep's FLOPs · " + o.eta +
      " · workers: " + o.workers + " running on " + o.cores + " cores";
    document.getElementById("progress-fill").style.width = (100 * o.done_fraction) + "%";
    var table = document.getElementById("runs");
    var head = table.tHead;
    head.textContent = "";
    var hr = head.insertRow();
    ["run"].concat(o.axes, ["status", "attempts", "progress", "last loss", "val loss", "tokens/s", "error"])
      .forEach(function (h, i) {
        var th = el("th", h + (sortBy === i ? (sortDown ? " ▼" : " ▲") : ""));
        th.title = "sort by " + h;
        th.style.cursor = "pointer";
        th.addEventListener("click", function () {
          sortDown = sortBy === i ? !sortDown : false;
          sortBy = i;
          renderOverview(o);
        });
        hr.appendChild(th);
      });
    var body = table.tBodies[0];
    body.textContent = "";
    o.runs.forEach(function (r) {
      var tr = body.insertRow();
      tr.id = "run-" + r.key;
      tr.setAttribute("data-status", r.status);
      var td = tr.insertCell();
      td.className = "key";
      if (r.status === "not registered") td.textContent = r.key;
      else { var a = el("a", r.key); a.href = "/run/" + r.key; a.title = r.label; td.appendChild(a); }
      r.axes.forEach(function (v) { tr.insertCell().textContent = v; });
      tr.insertCell().appendChild(el("span", r.status, "status " + r.status.replace(" ", "-")));
      tr.insertCell().textContent = r.attempts;
      tr.insertCell().textContent = r.steps ? r.step + "/" + r.steps + " (" + Math.round(100 * r.step / r.steps) + "%)" : "";
      tr.insertCell().textContent = fmt(r.last_loss, 4);
      tr.insertCell().textContent = fmt(r.val_loss, 4);
      tr.insertCell().textContent = r.tokens_per_second ? si(r.tokens_per_second) : "";
      var err = tr.insertCell();
      err.className = "err";
      err.textContent = r.error || "";
      err.title = r.error || "";
    });
    sortRows(body);
  }

  function overviewPage() {
    renderOverview(JSON.parse(document.getElementById("initial").textContent));
    listeners.overview.push(renderOverview);
    stream();
  }

  function curvesPage() {
    var form = document.getElementById("curve-controls");
    var chart = document.getElementById("chart");
    var params = new URLSearchParams(location.search);
    Array.prototype.forEach.call(form.elements, function (e) {
      if (!params.has(e.name)) return;
      if (e.type === "checkbox") e.checked = params.get(e.name) === e.value;
      else e.value = params.get(e.name);
    });
    var loading = false, again = false, last = 0;
    function query() {
      var q = new URLSearchParams();
      Array.prototype.forEach.call(form.elements, function (e) {
        if (e.type === "checkbox") { if (e.checked) q.set(e.name, e.value); }
        else if (e.value) q.set(e.name, e.value);
      });
      return q.toString();
    }
    function load() {
      if (loading) { again = true; return; }
      loading = true;
      last = Date.now();
      var width = Math.max(600, Math.min(1400, document.body.clientWidth - 60));
      fetch("/api/curves.svg?" + query() + "&width=" + width)
        .then(function (r) { return r.text(); })
        .then(function (svg) { chart.innerHTML = svg; })
        .finally(function () { loading = false; if (again) { again = false; load(); } });
    }
    form.addEventListener("change", function () {
      history.replaceState(null, "", "?" + query());
      load();
    });
    // The chart came with the page at a fixed width: redrawn at this window's once.
    // New steps: redraw, at most every two seconds.
    listeners.metrics.push(function () {
      var wait = Math.max(0, 2000 - (Date.now() - last));
      setTimeout(load, wait);
    });
    setTimeout(load, 0);
    stream();
  }

  function fitsPage() {
    // Reloaded when a newer build of the charts and laws is ready (a run finished).
    var version = document.getElementById("fits-version").getAttribute("data-version");
    function poll() {
      fetch("/api/fits").then(function (r) { return r.json(); }).then(function (f) {
        if (!f.computing && f.version !== version) { location.reload(); return; }
        setTimeout(poll, 2000);
      });
    }
    setTimeout(poll, 2000);
  }

  function runPage() {
    // A run still training: its page is redrawn from the server every few seconds.
    var status = document.querySelector("h1 .status");
    if (status && status.textContent === "running") {
      setTimeout(function () { location.reload(); }, 5000);
    }
  }

  var page = document.body.getAttribute("data-page");
  if (page === "overview") overviewPage();
  else if (page === "curves") curvesPage();
  else if (page === "fits") fitsPage();
  else if (page === "run") runPage();
})();
