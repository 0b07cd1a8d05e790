// The dashboard's only script: live updates over server-sent events, and the counts chart.
// Pages are rendered on the server; on each change event this replaces the rendered
// fragment (the table body, or a work's details) with a fresh one from the server.
(function () {
  "use strict";
  var STATES = ["ENQUEUED", "RUNNING", "SUCCEEDED", "FAILED", "BLOCKED", "CANCELLED"];
  var COLOURS = {
    ENQUEUED: "#2563eb", RUNNING: "#d97706", SUCCEEDED: "#15803d",
    FAILED: "#b91c1c", BLOCKED: "#6b7280", CANCELLED: "#7c3aed"
  };
  var SVG = "http://www.w3.org/2000/svg";
  var body = document.body;
  var root = body.getAttribute("data-root") || "";
  var page = body.getAttribute("data-page");
  var indicator = document.getElementById("live");
  var history = [];
  var historyNode = document.getElementById("history");
  if (historyNode) {
    try { history = JSON.parse(historyNode.textContent) || []; } catch (e) { history = []; }
  }

  function svgNode(name, attributes) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    return node;
  }

  function drawChart() {
    var chart = document.getElementById("chart");
    if (!chart) { return; }
    var width = chart.clientWidth || 800, height = 140, bottom = 18, top = 8;
    chart.setAttribute("viewBox", "0 0 " + width + " " + height);
    while (chart.firstChild) { chart.removeChild(chart.firstChild); }
    var points = history.slice();
    if (points.length) { points.push({ t: Date.now(), counts: points[points.length - 1].counts }); }
    if (points.length < 2) { return; }
    var t0 = points[0].t, t1 = points[points.length - 1].t, span = Math.max(t1 - t0, 1000);
    var max = 1;
    points.forEach(function (p) { STATES.forEach(function (s) { max = Math.max(max, p.counts[s] || 0); }); });
    var left = 14 + 7 * String(max).length;  // room for the largest label
    var x = function (t) { return left + (width - left - 6) * (t - t0) / span; };
    var y = function (v) { return top + (height - top - bottom) * (1 - v / max); };
    chart.appendChild(svgNode("line", { x1: left, y1: y(0), x2: width - 6, y2: y(0), stroke: "#cbd5e1" }));
    chart.appendChild(svgNode("line", { x1: left, y1: top, x2: left, y2: y(0), stroke: "#cbd5e1" }));
    var label = svgNode("text", { x: left - 6, y: top + 10, "text-anchor": "end", "font-size": "11", fill: "#475569" });
    label.textContent = String(max);
    chart.appendChild(label);
    var zero = svgNode("text", { x: left - 6, y: y(0), "text-anchor": "end", "font-size": "11", fill: "#475569" });
    zero.textContent = "0";
    chart.appendChild(zero);
    var since = svgNode("text", { x: left, y: height - 3, "font-size": "11", fill: "#475569" });
    since.textContent = new Date(t0).toLocaleTimeString();
    chart.appendChild(since);
    var until = svgNode("text", { x: width - 6, y: height - 3, "text-anchor": "end", "font-size": "11", fill: "#475569" });
    until.textContent = "now";
    chart.appendChild(until);
    STATES.forEach(function (s) {
      // Steps: a count holds until the next sample.
      var path = "";
      points.forEach(function (p, i) {
        var v = y(p.counts[s] || 0);
        path += (i === 0 ? "M" : "H" + x(p.t).toFixed(1) + "V") + (i === 0 ? x(p.t).toFixed(1) + "," : "") + v.toFixed(1);
      });
      chart.appendChild(svgNode("path", { d: path, fill: "none", stroke: COLOURS[s], "stroke-width": "2", "data-state": s }));
    });
  }

  // One refresh at a time per fragment; changes that arrive meanwhile cause one more.
  var busy = {}, pending = {};
  function refresh(url, find) {
    if (busy[url]) { pending[url] = true; return; }
    busy[url] = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        var template = document.createElement("template");
        template.innerHTML = html;
        find(template.content);
      })
      .catch(function () { /* the next change event tries again */ })
      .then(function () {
        busy[url] = false;
        if (pending[url]) { pending[url] = false; refresh(url, find); }
      });
  }

  function onChange(event) {
    var data = JSON.parse(event.data);
    STATES.forEach(function (s) {
      var node = document.querySelector('[data-count="' + s + '"]');
      if (node) { node.textContent = data.counts[s]; }
    });
    var last = history[history.length - 1];
    if (last && data.t - last.t < 1000) { history[history.length - 1] = { t: data.t, counts: data.counts }; }
    else { history.push({ t: data.t, counts: data.counts }); }
    drawChart();
    if (page === "index") {
      var table = document.getElementById("work-table");
      refresh(table.getAttribute("data-rows"), function (fragment) {
        var fresh = fragment.querySelector("tbody");
        var old = document.getElementById("rows");
        if (fresh && old) { old.replaceWith(fresh); }
      });
    } else if (page === "work") {
      var box = document.getElementById("work-live");
      refresh(box.getAttribute("data-live"), function (fragment) {
        box.replaceChildren(fragment);
      });
    }
  }

  drawChart();
  window.addEventListener("resize", drawChart);
  // The server ends each stream after a while and the browser reconnects at once; only a
  // stream that stays down is worth showing.
  var source = new EventSource(root + "/events");
  var down = null;
  source.addEventListener("change", onChange);
  source.addEventListener("open", function () {
    if (down !== null) { clearTimeout(down); down = null; }
    indicator.textContent = "live";
    indicator.className = "live on";
  });
  source.addEventListener("error", function () {
    if (down !== null) { return; }
    down = setTimeout(function () {
      indicator.textContent = "reconnecting…";
      indicator.className = "live";
    }, 2000);
  });
})();
