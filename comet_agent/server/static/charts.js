/* comet-agent experiment page: interactive metric charts, drawn with the vendored uPlot
 * (static/vendor/uplot, MIT). Written for comet-agent (same licence as the package); no network
 * use, no eval, no inline script or style attribute: the page's Content-Security-Policy holds.
 *
 * Data comes from the page's <script type="application/json" id="chart-data"> block, built by
 * server/pages/charts.py: charts already grouped, downsampled and in their display unit, the
 * per-core heatmap of a many-core host, and the run's start and end marks.
 *
 * Each chart: hover read-out in the legend (value with its unit), drag to zoom (double-click
 * resets), cursors synced across the charts sharing an x axis, a click on a legend entry hides or
 * shows its series. Figures record what was drawn in data-* attributes (data-rendered,
 * data-rendered-points, data-x-min/max), which the browser tests read. */
(function () {
  "use strict";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"];
  var BINARY = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  var HEIGHT = 220;
  // Axis steps: 1-2-5 decades for plain values, powers of two of each binary prefix for bytes
  // (256 MiB, 512 MiB, 1 GiB, ...), so tick labels are round numbers in the unit they show.
  var DECIMAL_STEPS = [], BINARY_STEPS = [];
  (function () {
    for (var e = -6; e <= 15; e++) [1, 2, 5].forEach(function (m) { DECIMAL_STEPS.push(Number((m * Math.pow(10, e)).toPrecision(3))); });
    for (var p = 0; p < BINARY.length; p++) {
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].forEach(function (m) { BINARY_STEPS.push(m * Math.pow(1024, p)); });
    }
  })();

  function threeDigits(value) {
    // Round to the digits shown first, so 99.97 reads "100", not "100.0".
    if (Math.abs(value) < 100) value = Number(value.toPrecision(3));
    var abs = Math.abs(value);
    if (abs >= 100 || Number.isInteger(value)) return String(Math.round(value));
    if (abs >= 10) return value.toFixed(1);
    if (abs >= 1) return value.toFixed(2).replace(/\.?0+$/, "");
    if (abs === 0) return "0";
    return String(Number(value.toPrecision(3)));
  }

  /** A value (already in the chart's display unit) for people: binary prefixes for bytes. */
  function formatValue(value, unit) {
    if (value === null || value === undefined || !isFinite(value)) return "-";
    if (unit === "bytes" || unit === "B/s") {
      var i = 0;
      while (Math.abs(value) >= 1024 && i < BINARY.length - 1) { value /= 1024; i++; }
      return threeDigits(value) + " " + BINARY[i] + (unit === "B/s" ? "/s" : "");
    }
    var text = threeDigits(value);
    if (unit === "%") return text + "%";
    return unit ? text + " " + unit : text;
  }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function formatTime(seconds) {
    var d = new Date(seconds * 1000);
    return d.getUTCFullYear() + "-" + pad2(d.getUTCMonth() + 1) + "-" + pad2(d.getUTCDate()) + " " +
      pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes()) + ":" + pad2(d.getUTCSeconds()) + " UTC";
  }

  /** Time-axis labels in UTC (the page's header times are UTC), as precise as the tick step. */
  function timeTicks(u, ticks, axisIndex, space, step) {
    return ticks.map(function (t) {
      var d = new Date(t * 1000);
      var hm = pad2(d.getUTCHours()) + ":" + pad2(d.getUTCMinutes());
      if (step >= 86400) return d.getUTCFullYear() + "-" + pad2(d.getUTCMonth() + 1) + "-" + pad2(d.getUTCDate());
      if (step >= 3600 * 6) return pad2(d.getUTCMonth() + 1) + "-" + pad2(d.getUTCDate()) + " " + hm;
      return step >= 60 ? hm : hm + ":" + pad2(d.getUTCSeconds());
    });
  }

  /** The legend's value: at the cursor while hovering, else the series' last value. */
  function legendValue(format) {
    return function (u, value, seriesIndex, index) {
      if (index === null || index === undefined) {
        var column = u.data[seriesIndex];
        for (var i = column.length - 1; i >= 0; i--) {
          // The x cell: the last moment any series has a value (marks add x values without one).
          var present = seriesIndex === 0 ? u.data.some(function (c, k) { return k > 0 && c[i] != null; }) : column[i] != null;
          if (present) return format(column[i]);
        }
      }
      return value === null || value === undefined ? "-" : format(value);
    };
  }

  function yRange(unit) {
    return function (u, min, max) {
      if (min === null || max === null) return [0, unit === "%" ? 100 : 1];
      if (min > 0) min = 0;
      if (unit === "%" && max <= 100) max = 100;
      if (max === min) max = min + 1;
      return unit === "%" && max === 100 ? [min, max] : uPlot.rangeNum(min, max, 0.1, true);
    };
  }

  /** [x, y1, y2, ...] for uPlot: every series on one x axis (seconds for time), gaps as null.
   * Extra x values (the run's marks) join the axis so the marks are inside the chart's range. */
  function alignedData(chart, extraXs) {
    var scale = chart.x === "timestamp" ? 1000 : 1;
    var tables = chart.series.map(function (s) {
      return [s.points.map(function (p) { return p[0] / scale; }), s.points.map(function (p) { return p[1]; })];
    });
    if (extraXs.length) tables.push([extraXs, extraXs.map(function () { return null; })]);
    var data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    if (extraXs.length) data.pop();
    return data;
  }

  /** The run's start / end as dashed lines (canvas) with a label (DOM, in the plot's overlay). */
  function markPlugin(marks) {
    var labels = [];
    return {
      hooks: {
        init: function (u) {
          marks.forEach(function (mark) {
            var div = document.createElement("div");
            div.className = "run-mark run-mark-" + mark.kind;
            div.setAttribute("data-mark", mark.kind);
            div.textContent = mark.label;
            div.title = mark.label + " at " + formatTime(mark.atMs / 1000);
            u.over.appendChild(div);
            labels.push(div);
          });
        },
        draw: function (u) {
          var ctx = u.ctx;
          marks.forEach(function (mark, i) {
            var x = mark.atMs / 1000;
            var visible = x >= u.scales.x.min && x <= u.scales.x.max;
            labels[i].hidden = !visible;
            if (!visible) return;
            var left = u.valToPos(x, "x");
            labels[i].style.left = left + "px";
            var px = Math.round(u.valToPos(x, "x", true)) + 0.5;
            ctx.save();
            ctx.strokeStyle = mark.kind === "start" ? "#15803d" : (/crashed|exit [1-9]/.test(mark.label) ? "#b91c1c" : "#1d2330");
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.beginPath();
            ctx.moveTo(px, u.bbox.top);
            ctx.lineTo(px, u.bbox.top + u.bbox.height);
            ctx.stroke();
            ctx.restore();
          });
        },
      },
    };
  }

  // Utilisation colour: a perceptual ramp (viridis stops), 0% dark blue to 100% yellow.
  var RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function heatColour(percent) {
    if (percent === null) return [235, 237, 240];
    var t = Math.max(0, Math.min(1, percent / 100)) * (RAMP.length - 1);
    var i = Math.min(Math.floor(t), RAMP.length - 2), f = t - i;
    return RAMP[i].map(function (v, k) { return Math.round(v + (RAMP[i + 1][k] - v) * f); });
  }

  /** The grid at one pixel per cell (columns x rows), coloured once; drawing scales it. */
  function heatmapCells(heatmap) {
    var cells = document.createElement("canvas");
    cells.width = heatmap.columns;
    cells.height = heatmap.rows.length;
    var ctx = cells.getContext("2d");
    var image = ctx.createImageData(cells.width, cells.height);
    heatmap.rows.forEach(function (row, r) {
      row.values.forEach(function (value, c) {
        var colour = heatColour(value), at = (r * cells.width + c) * 4;
        image.data[at] = colour[0];
        image.data[at + 1] = colour[1];
        image.data[at + 2] = colour[2];
        image.data[at + 3] = 255;
      });
    });
    ctx.putImageData(image, 0, 0);
    return cells;
  }

  /** The per-core heatmap: a canvas aligned with the average chart's plot area below it, redrawn
   * for the x range that chart shows (zoom included). Rows = cores, columns = time. */
  function heatmapPlugin(holder, heatmap) {
    var rows = heatmap.rows.length;
    var rowPx = Math.max(2, Math.min(6, Math.floor(240 / rows)));
    var canvas = document.createElement("canvas");
    canvas.className = "heatmap-canvas";
    canvas.setAttribute("data-rows", String(rows));
    canvas.setAttribute("data-columns", String(heatmap.columns));
    canvas.setAttribute("data-series-names", heatmap.rows.map(function (r) { return r.name; }).join(" "));
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", "CPU utilisation per core over time (" + rows + " cores)");
    var axis = document.createElement("div");
    axis.className = "heatmap-axis";
    var top = document.createElement("span"), bottom = document.createElement("span");
    top.textContent = "core 1";
    bottom.textContent = "core " + rows;
    axis.appendChild(top);
    axis.appendChild(bottom);
    var readout = document.createElement("div");
    readout.className = "heatmap-readout";
    readout.textContent = rows + " cores; hover for a core's value (0% dark, 100% yellow)";
    var wrap = document.createElement("div");
    wrap.className = "heatmap-wrap";
    wrap.appendChild(axis);
    wrap.appendChild(canvas);
    holder.appendChild(wrap);
    holder.appendChild(readout);
    var width = (heatmap.x1 - heatmap.x0) / heatmap.columns / 1000 || 1;
    var x0 = heatmap.x0 / 1000;
    var cells = heatmapCells(heatmap);
    var plot = null;

    function draw(u) {
      plot = u;
      var dpr = devicePixelRatio || 1;
      var left = u.bbox.left / dpr, cssWidth = u.bbox.width / dpr;
      wrap.style.marginLeft = Math.max(left - 52, 0) + "px";
      axis.style.height = rows * rowPx + "px";
      canvas.style.width = cssWidth + "px";
      canvas.style.height = rows * rowPx + "px";
      canvas.width = Math.round(cssWidth * dpr);
      canvas.height = Math.round(rows * rowPx * dpr);
      var ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      // The grid's time span mapped onto the chart's x range (zoom included); the canvas clips.
      var min = u.scales.x.min, max = u.scales.x.max, span = (max - min) || 1;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(cells, (x0 - min) / span * canvas.width, 0,
        heatmap.columns * width / span * canvas.width, canvas.height);
    }

    canvas.addEventListener("mousemove", function (event) {
      if (!plot) return;
      var rect = canvas.getBoundingClientRect();
      var row = Math.min(rows - 1, Math.max(0, Math.floor((event.clientY - rect.top) / rowPx)));
      var x = plot.scales.x.min + (event.clientX - rect.left) / rect.width * (plot.scales.x.max - plot.scales.x.min);
      var column = Math.min(heatmap.columns - 1, Math.max(0, Math.floor((x - x0) / width)));
      var value = heatmap.rows[row].values[column];
      readout.textContent = heatmap.rows[row].name + " at " + formatTime(x) + ": " + formatValue(value, "%");
    });
    return { hooks: { draw: draw } };
  }

  function renderChart(figure, chart, marks, syncKeys, width) {
    var plotHolder = figure.querySelector(".plot");
    var isTime = chart.x === "timestamp";
    var chartMarks = isTime ? marks : [];
    var data = alignedData(chart, chartMarks.map(function (m) { return m.atMs / 1000; }));
    var unit = chart.unit;
    var binary = unit === "bytes" || unit === "B/s";
    var many = chart.series.length > 1;
    var series = [{
      label: isTime ? "time" : "step",
      value: legendValue(isTime ? formatTime : String),
    }];
    chart.series.forEach(function (s, index) {
      series.push({
        // Full names: what `comet-agent show` and the REST API call them.
        label: s.name,
        stroke: COLOURS[index % COLOURS.length],
        width: /\.avg$/.test(s.name) || !many ? 2 : 1.2,
        spanGaps: true,
        value: legendValue(function (v) { return formatValue(v, unit); }),
      });
    });
    var plugins = [markPlugin(chartMarks)];
    var heatmapHolder = figure.querySelector(".heatmap");
    if (chart.heatmap && heatmapHolder) plugins.push(heatmapPlugin(heatmapHolder, chart.heatmap));
    var options = {
      width: Math.max(width, 300),
      height: HEIGHT,
      series: series,
      plugins: plugins,
      // Cursors move together across charts of the same x kind (time, or step).
      cursor: { sync: { key: syncKeys[isTime ? "time" : "step"].key }, drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: isTime }, y: { range: yRange(unit) } },
      axes: [
        isTime ? { stroke: "#6b7280", grid: { stroke: "#eef0f3" }, values: timeTicks, space: 70, size: 32 }
          : { stroke: "#6b7280", grid: { stroke: "#eef0f3" } },
        {
          stroke: "#6b7280",
          grid: { stroke: "#eef0f3" },
          size: 64,
          incrs: binary ? BINARY_STEPS : DECIMAL_STEPS,
          values: function (u, ticks) { return ticks.map(function (t) { return formatValue(t, unit); }); },
        },
      ],
      hooks: {
        setScale: [function (u, key) {
          if (key !== "x") return;
          figure.setAttribute("data-x-min", String(u.scales.x.min));
          figure.setAttribute("data-x-max", String(u.scales.x.max));
        }],
      },
    };
    if (isTime) options.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
    var plot = new uPlot(options, data, plotHolder);
    var total = 0;
    var rows = plot.root.querySelectorAll(".u-legend .u-series");
    chart.series.forEach(function (s, index) {
      total += s.points.length;
      var row = rows[index + 1];
      if (row) {
        row.setAttribute("data-series", s.name);
        row.setAttribute("data-points", String(s.points.length));
      }
    });
    if (chart.heatmap) total += chart.heatmap.rows.length * chart.heatmap.columns;
    var summary = figure.querySelector(".chart-summary");
    if (summary) summary.hidden = true;
    figure.setAttribute("data-x-min", String(plot.scales.x.min));
    figure.setAttribute("data-x-max", String(plot.scales.x.max));
    figure.setAttribute("data-rendered-points", String(total));
    figure.setAttribute("data-rendered", "true");
    return plot;
  }

  function renderCharts() {
    var block = document.getElementById("chart-data");
    var rendered = 0, plots = [];
    if (block && typeof uPlot === "function") {
      var data = JSON.parse(block.textContent);
      var syncKeys = { time: uPlot.sync("comet-agent-time"), step: uPlot.sync("comet-agent-step") };
      // Every width read before any chart is added: one layout instead of one per chart.
      var widths = data.charts.map(function (chart) {
        var figure = document.getElementById(chart.domId);
        return figure ? figure.querySelector(".plot").clientWidth : 0;
      });
      data.charts.forEach(function (chart, index) {
        var figure = document.getElementById(chart.domId);
        if (!figure) return;
        try { plots.push([figure, renderChart(figure, chart, data.marks || [], syncKeys, widths[index])]); rendered++; } catch (err) {
          figure.setAttribute("data-render-error", String(err));
        }
      });
    }
    document.body.setAttribute("data-charts-rendered", String(rendered));
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        plots.forEach(function (entry) {
          var width = Math.max(entry[0].querySelector(".plot").clientWidth, 300);
          entry[1].setSize({ width: width, height: HEIGHT });
        });
      }, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", renderCharts);
  else renderCharts();
})();
