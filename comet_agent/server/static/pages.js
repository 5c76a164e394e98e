/* comet-agent local server pages: SVG line charts and package filters.
 * Written for comet-agent (same licence as the package); no third-party code, no network use.
 * Chart data comes from the page's <script type="application/json" id="chart-data"> block,
 * already downsampled by the server. Every value is inserted with textContent or
 * setAttribute, never as HTML. */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  var W = 640, H = 240, L = 64, R = 12, T = 10, B = 30;

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    for (var key in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, key)) node.setAttribute(key, String(attrs[key])); }
    if (parent) parent.appendChild(node);
    return node;
  }

  function formatValue(value, unit) {
    var abs = Math.abs(value);
    if (unit === "bytes" || unit === "B/s") {
      var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0;
      while (abs >= 1024 && i < units.length - 1) { abs /= 1024; value /= 1024; i++; }
      return value.toFixed(abs >= 100 ? 0 : (abs >= 10 || abs === 0 ? 1 : 2)).replace(/\.0+$/, "") + " " + units[i] + (unit === "B/s" ? "/s" : "");
    }
    if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(2);
    return (Math.round(value * 1000) / 1000).toString();
  }

  function formatX(value, kind, span) {
    if (kind === "step") return String(Math.round(value));
    var date = new Date(value);
    var iso = date.toISOString();
    return span > 2 * 86400000 ? iso.slice(5, 16).replace("T", " ") : iso.slice(11, 19);
  }

  function renderChart(figure, chart) {
    var plot = figure.querySelector(".plot");
    var legend = figure.querySelector(".chart-legend");
    var xMin = Infinity, xMax = -Infinity, yMin = Infinity, yMax = -Infinity;
    chart.series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (p[0] < xMin) xMin = p[0]; if (p[0] > xMax) xMax = p[0];
        if (p[1] < yMin) yMin = p[1]; if (p[1] > yMax) yMax = p[1];
      });
    });
    if (chart.unit === "%" || yMin > 0) yMin = Math.min(yMin, 0);
    if (chart.unit === "%" && yMax <= 100) yMax = 100;
    if (yMax === yMin) { yMax = yMin + 1; }
    if (xMax === xMin) { xMax = xMin + 1; }
    var sx = function (x) { return L + (x - xMin) / (xMax - xMin) * (W - L - R); };
    var sy = function (y) { return H - B - (y - yMin) / (yMax - yMin) * (H - T - B); };
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, "class": "chart-svg", role: "img" });
    el("title", {}, svg).textContent = chart.title;
    for (var g = 0; g <= 4; g++) {
      var yv = yMin + (yMax - yMin) * g / 4, y = sy(yv);
      el("line", { x1: L, x2: W - R, y1: y, y2: y, "class": "grid-line" }, svg);
      el("text", { x: L - 6, y: y + 4, "text-anchor": "end", "class": "axis-label" }, svg).textContent = formatValue(yv, chart.unit);
    }
    for (var t = 0; t <= 4; t++) {
      var xv = xMin + (xMax - xMin) * t / 4;
      el("text", { x: sx(xv), y: H - 8, "text-anchor": t === 0 ? "start" : (t === 4 ? "end" : "middle"), "class": "axis-label" }, svg)
        .textContent = formatX(xv, chart.x, xMax - xMin);
    }
    var total = 0;
    chart.series.forEach(function (s, index) {
      var colour = COLOURS[index % COLOURS.length];
      var d = "";
      s.points.forEach(function (p, i) { d += (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1); });
      var path = el("path", { d: d, fill: "none", stroke: colour, "stroke-width": /\.avg$/.test(s.name) ? 2.2 : 1.2,
        "class": "series", "data-series": s.name, "data-points": s.points.length }, svg);
      el("title", {}, path).textContent = s.name;
      if (s.points.length === 1) {
        el("circle", { cx: sx(s.points[0][0]), cy: sy(s.points[0][1]), r: 3, fill: colour, "class": "series-dot" }, svg);
      }
      total += s.points.length;
      var item = document.createElement("span");
      item.className = "legend-item";
      var swatch = el("svg", { width: 12, height: 12, "class": "swatch" });
      el("rect", { width: 12, height: 12, fill: colour }, swatch);
      item.appendChild(swatch);
      var label = document.createElement("span");
      var last = s.points.length ? s.points[s.points.length - 1][1] : null;
      label.textContent = " " + s.name + (last === null ? "" : " = " + formatValue(last, chart.unit));
      item.appendChild(label);
      legend.appendChild(item);
    });
    plot.appendChild(svg);
    figure.setAttribute("data-rendered-points", String(total));
    figure.setAttribute("data-rendered", "true");
  }

  function renderCharts() {
    var block = document.getElementById("chart-data");
    var rendered = 0;
    if (block) {
      var data = JSON.parse(block.textContent);
      data.charts.forEach(function (chart) {
        var figure = document.getElementById(chart.domId);
        if (!figure) return;
        try { renderChart(figure, chart); rendered++; } catch (err) {
          figure.setAttribute("data-render-error", String(err));
        }
      });
    }
    document.body.setAttribute("data-charts-rendered", String(rendered));
  }

  function wireFilters() {
    Array.prototype.forEach.call(document.querySelectorAll("input.filter"), function (input) {
      var list = document.getElementById(input.getAttribute("data-filter-target"));
      if (!list) return;
      input.addEventListener("input", function () {
        var needle = input.value.toLowerCase();
        Array.prototype.forEach.call(list.children, function (item) {
          item.hidden = needle !== "" && item.textContent.toLowerCase().indexOf(needle) === -1;
        });
      });
    });
  }

  function start() {
    wireFilters();
    renderCharts();
    document.body.setAttribute("data-pages-js", "ready");
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
