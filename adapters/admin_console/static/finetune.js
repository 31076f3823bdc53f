// advisor console, fine-tuning page: follows a job (status, events, a training-loss chart drawn as an
// inline SVG) and a running comparison, by polling the page's JSON endpoints. No library, no build step.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var TERMINAL = {succeeded: 1, failed: 1, cancelled: 1};

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function chart(box, points, totalSteps) {
    var width = 640, height = 220, pad = 36;
    box.textContent = "";
    var svg = el("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height, role: "img",
                         "class": "loss-chart"}, box);
    el("title", {}, svg).textContent = "training loss by step";
    if (!points.length) {
      var empty = el("text", {x: pad, y: height / 2, fill: "#5f6673"}, svg);
      empty.textContent = "No training metrics yet.";
      return;
    }
    var maxStep = Math.max(totalSteps || 0, points[points.length - 1].step || points.length);
    var losses = points.map(function (p) { return p.train_loss; });
    var top = Math.max.apply(null, losses), bottom = Math.min(0, Math.min.apply(null, losses));
    if (top === bottom) { top = bottom + 1; }
    function x(step) { return pad + (width - 2 * pad) * (step / Math.max(1, maxStep)); }
    function y(loss) { return height - pad - (height - 2 * pad) * ((loss - bottom) / (top - bottom)); }
    el("line", {x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#9aa1ad"}, svg);
    el("line", {x1: pad, y1: pad, x2: pad, y2: height - pad, stroke: "#9aa1ad"}, svg);
    [[top, y(top)], [bottom, y(bottom)]].forEach(function (tick) {
      var label = el("text", {x: 2, y: tick[1] + 4, "font-size": 11, fill: "#5f6673"}, svg);
      label.textContent = tick[0].toFixed(2);
    });
    var steps = el("text", {x: width - pad, y: height - 10, "font-size": 11, fill: "#5f6673", "text-anchor": "end"}, svg);
    steps.textContent = "step " + (points[points.length - 1].step || points.length) + (totalSteps ? "/" + totalSteps : "");
    var path = points.map(function (p, i) { return x(p.step || i + 1).toFixed(1) + "," + y(p.train_loss).toFixed(1); });
    el("polyline", {points: path.join(" "), fill: "none", stroke: "#5b8def", "stroke-width": 2, "class": "train-loss"}, svg);
    points.forEach(function (p, i) {
      el("circle", {cx: x(p.step || i + 1), cy: y(p.train_loss), r: 2.5, fill: "#5b8def"}, svg);
    });
    var legend = el("text", {x: width - pad, y: pad - 10, "font-size": 12, fill: "#5b8def", "text-anchor": "end"}, svg);
    legend.textContent = "train loss " + losses[losses.length - 1].toFixed(4);
  }

  function followJob(box) {
    var url = box.getAttribute("data-url");
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (job) {
          if (job.error && !job.status) { box.querySelector(".status").textContent = job.error; return; }
          box.setAttribute("data-state", job.status);
          box.querySelector(".status").textContent = job.status + (job.error ? ": " + job.error : "");
          box.querySelector(".model code").textContent = job.fine_tuned_model || "-";
          box.querySelector(".events").textContent = job.events.join("\n");
          chart(box.querySelector(".chart"), job.points, job.total_steps);
          if (!TERMINAL[job.status]) { setTimeout(tick, 1000); }
        })
        .catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }

  function followComparison(box) {
    function tick() {
      fetch("/admin/finetune/compare.json", {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.json(); })
        .then(function (state) {
          if (state.state === "running") { setTimeout(tick, 1000); } else { window.location.reload(); }
        })
        .catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var job = document.getElementById("job");
    if (job) { followJob(job); }
    var comparison = document.getElementById("comparison");
    if (comparison && comparison.getAttribute("data-state") === "running") { followComparison(comparison); }
  });
})();
