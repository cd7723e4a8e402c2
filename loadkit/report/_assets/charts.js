/* loadkit's charts: uPlot plus one plugin for what uPlot does not draw declaratively (shaded
   regions: profile stages, fault windows, scenarios; threshold lines; stop-condition markers).
   Used by the HTML report and `loadkit serve`'s /ui. Each chart's spec comes from
   loadkit/report/charts.py::chart_specs; after drawing, the plugin writes what it drew onto the
   chart's element (data-regions, data-thresholds, data-stops, data-markers, data-points) so tests can
   check the picture. `update(root, specs)` feeds new data to the charts already drawn (setData: the
   live page of `loadkit serve` polls its run), rebuilding a chart only when its series change. */
var loadkitCharts = (function () {
  "use strict";
  var REGION = {fault: "rgba(207,34,46,0.16)", stage: "rgba(9,105,218,0.06)", scenario: "rgba(130,80,223,0.08)"};
  var REGION_ALT = {stage: "rgba(9,105,218,0.12)", scenario: "rgba(130,80,223,0.15)"};

  function fmtValue(v, unit) {
    if (v == null) return "-";
    var a = Math.abs(v), text = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
    text = text.indexOf(".") >= 0 ? text.replace(/\.?0+$/, "") : text;
    return unit ? text + " " + unit : text;
  }

  // a label stays readable where it crosses the data's lines and the shaded regions
  function backdrop(ctx, x, y, w, pr) {
    ctx.fillStyle = "rgba(255,255,255,0.82)";
    ctx.fillRect(x - 2 * pr, y - 11 * pr, w + 4 * pr, 14 * pr);
  }

  function annotations(held) {
    return {
      hooks: {
        drawClear: [function (u) {
          var spec = held.spec, ctx = u.ctx, box = u.bbox, n = 0;
          (spec.regions || []).forEach(function (r, i) {
            var x0 = Math.max(u.valToPos(r.from, "x", true), box.left);
            var x1 = Math.min(u.valToPos(r.to, "x", true), box.left + box.width);
            if (!(x1 > x0)) return;
            ctx.save();
            ctx.fillStyle = (i % 2 && REGION_ALT[r.kind]) || REGION[r.kind] || REGION.stage;
            ctx.fillRect(x0, box.top, x1 - x0, box.height);
            ctx.restore();
            n++;
          });
          u.root.dataset.regions = String(n);
        }],
        draw: [function (u) {
          var spec = held.spec, ctx = u.ctx, box = u.bbox, pr = devicePixelRatio || 1, drawn = [], marks = 0,
              stops = 0, labels = [];
          ctx.save();
          ctx.font = Math.round(11 * pr) + "px sans-serif";
          ctx.textAlign = "left";  // uPlot leaves its axis labels' alignment on the context
          ctx.textBaseline = "alphabetic";
          (spec.regions || []).forEach(function (r) {
            if (!r.label) return;
            var x0 = Math.max(u.valToPos(r.from, "x", true), box.left);
            if (x0 >= box.left + box.width) return;
            ctx.fillStyle = r.kind === "fault" ? "#a40e26" : "#57606a";
            ctx.fillText(r.label, x0 + 3 * pr, box.top + (r.kind === "fault" ? 24 : 12) * pr);
          });
          (spec.thresholds || []).forEach(function (t) {
            var y = u.valToPos(t.value, t.scale || "y", true);
            if (!(y >= box.top && y <= box.top + box.height)) return;
            var color = t.kind === "stop" ? "#8250df" : "#cf222e";  // a stop condition's limit: the marker's colour
            ctx.strokeStyle = color; ctx.lineWidth = 1.5 * pr;
            ctx.setLineDash(t.kind === "stop" ? [2 * pr, 3 * pr] : [6 * pr, 4 * pr]);
            ctx.beginPath(); ctx.moveTo(box.left, y); ctx.lineTo(box.left + box.width, y); ctx.stroke();
            ctx.setLineDash([]); ctx.fillStyle = color;
            // below the line, or above it when that would run into another line's label or off the plot
            var ty = y + 13 * pr;
            if (ty > box.top + box.height - 2 * pr ||
                labels.some(function (l) { return Math.abs(l - ty) < 13 * pr; })) ty = y - 4 * pr;
            labels.push(ty);
            var w = ctx.measureText(t.label).width, tx = box.left + box.width - w - 4 * pr;
            backdrop(ctx, tx, ty, w, pr);
            ctx.fillStyle = color;
            ctx.fillText(t.label, tx, ty);
            drawn.push(t.value);
            if (t.kind === "stop") stops++;
          });
          (spec.markers || []).forEach(function (m) {
            var x = u.valToPos(m.at, "x", true);
            if (!(x >= box.left && x <= box.left + box.width)) return;
            ctx.strokeStyle = "#8250df"; ctx.lineWidth = 2 * pr;
            ctx.beginPath(); ctx.moveTo(x, box.top); ctx.lineTo(x, box.top + box.height); ctx.stroke();
            var text = "\u25BC " + m.label, w = ctx.measureText(text).width;
            var at = x + 3 * pr + w > box.left + box.width ? x - 3 * pr - w : x + 3 * pr;  // stay inside the plot
            backdrop(ctx, at, box.top + box.height - 6 * pr, w, pr);
            ctx.fillStyle = "#8250df"; ctx.fillText(text, at, box.top + box.height - 6 * pr);  // clear of the lines' labels
            marks++;
          });
          ctx.restore();
          u.root.dataset.thresholds = drawn.join(",");
          u.root.dataset.stops = String(stops);
          u.root.dataset.markers = String(marks);
          u.root.dataset.points = String(spec.x.length);
        }]
      }
    };
  }

  function percentileLabel(x) {
    var p = 100 * (1 - 1 / x);
    if (p <= 0) return "0%";
    var digits = Math.max(0, Math.ceil(Math.log10(x) - 1e-9) - 2);
    return p.toFixed(digits) + "%";
  }

  function percentileSplits(u) {
    var max = u.scales.x.max || 10, splits = [1, 2, 4];  // 0%, 50%, 75%, then 90%, 99%, 99.9% ...
    for (var x = 10; x <= max * 1.0001; x *= 10) splits.push(x);
    return splits;
  }

  var SECOND_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400,
                      604800, 2592000, 31536000];

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function timeLabel(ts, span) {
    var d = new Date(ts * 1e3);
    var hms = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + (span < 3600 ? ":" + pad(d.getUTCSeconds()) : "");
    return span > 86400 ? d.toISOString().slice(0, 10) + (span < 30 * 86400 ? " " + hms : "") : hms;
  }

  function options(held, width) {
    var spec = held.spec, unit = spec.y_unit || "";
    var percentile = spec.x_kind === "percentile";
    var series = [{label: percentile ? "percentile" : "time (UTC)",
                   value: percentile ? function (u, v) {
                     if (v == null) return "-";
                     // a curve's last point (p = 1) is placed at 2n: it is the maximum, not a percentile
                     return (held.spec.x_max_at || []).indexOf(v) >= 0 ? "max" : percentileLabel(v);
                   }
                                     : function (u, v) { return v == null ? "-" : timeLabel(v, 1); }}];
    spec.series.forEach(function (s) {
      series.push({label: s.label, stroke: s.color, width: 1.6, dash: s.dash || undefined,
                   points: {show: !!spec.points, size: 7, fill: s.color}, spanGaps: percentile,
                   value: function (u, v) { return fmtValue(v, unit); }});
    });
    var xAxis = {label: percentile ? "percentile of requests (log scale)" : "time (UTC)", labelSize: 18};
    if (percentile) {
      xAxis.splits = percentileSplits;
      xAxis.filter = function (u, splits) { return splits; };  // uPlot's log filter would hide 50% and 75%
      xAxis.values = function (u, splits) { return splits.map(percentileLabel); };
    } else {
      xAxis.incrs = SECOND_INCRS;
      xAxis.space = 70;
      xAxis.values = function (u, splits) {
        var span = (u.scales.x.max || 0) - (u.scales.x.min || 0);
        return splits.map(function (ts) { return timeLabel(ts, span); });
      };
    }
    var x = percentile ? {time: false, distr: 3} : {time: true};
    if (!percentile) x.range = function () { return timeRange(held.spec); };
    return {
      title: spec.title, width: width, height: spec.height || 220, series: series,
      scales: {x: x,
               y: {range: function (u, lo, hi) {
                 var limits = (held.spec.thresholds || []).map(function (t) { return t.value * 1.1; });
                 var top = Math.max.apply(null, [hi || 0, held.spec.y_max || 0, 1].concat(limits));
                 return [0, top];
               }}},
      axes: [xAxis, {label: spec.y_label + (unit ? " (" + unit + ")" : ""), labelSize: 18, size: 60,
                     values: function (u, vals) { return vals.map(function (v) { return fmtValue(v, ""); }); }}],
      legend: {live: true},
      plugins: [annotations(held)]
    };
  }

  // The time axis: the span the result gives (a game day: its start to its end), else the data and
  // everything drawn on it, so a stop that fired after the last window still shows.
  function timeRange(spec) {
    if (spec.x_range) return spec.x_range.slice();
    var ends = spec.x.slice();
    (spec.regions || []).forEach(function (r) { ends.push(r.from, r.to); });
    (spec.markers || []).forEach(function (m) { ends.push(m.at); });
    if (!ends.length) { var now = Date.now() / 1e3; return [now - 60, now]; }
    var lo = Math.min.apply(null, ends), hi = Math.max.apply(null, ends);
    if (lo === hi) { var pad = spec.points ? 86400 : 30; lo -= pad; hi += pad; }  // one game day: its date shows
    return [lo, hi];
  }

  function dataOf(spec) {
    return [spec.x].concat(spec.series.map(function (s) { return s.values; }));
  }

  function labelsOf(spec) {
    return spec.series.map(function (s) { return s.label; }).join("\n");
  }

  var mounted = [];

  function chartWidth(root) {
    return Math.max(320, Math.min(root.clientWidth || 960, 1100));
  }

  function draw(root, spec, before) {
    var el = document.createElement("figure");
    el.className = "lk-chart";
    el.dataset.chart = spec.id;
    root.insertBefore(el, before || null);
    var held = {spec: spec};
    var u = new uPlot(options(held, chartWidth(root)), dataOf(spec), el);
    u.root.dataset.chart = spec.id;
    u.loadkit = held;
    mounted.push(u);
    root.dataset.mounts = String(Number(root.dataset.mounts || 0) + 1);  // charts built: an update builds none
    return u;
  }

  function mount(root, specs) {
    specs.forEach(function (spec) { draw(root, spec); });
    root.dataset.charts = String(specs.length);
    return mounted;
  }

  function update(root, specs) {
    var mine = mounted.filter(function (u) { return root.contains(u.root); });
    specs.forEach(function (spec) {
      var u = mine.find(function (c) { return c.loadkit.spec.id === spec.id; });
      if (u && labelsOf(u.loadkit.spec) === labelsOf(spec)) {
        u.loadkit.spec = spec;
        u.setData(dataOf(spec));  // rescales, redraws, and the plugin redraws the lines with the new spec
        return;
      }
      var old = u ? u.root.parentNode : null;  // a new series (a new failure class): this chart is rebuilt
      if (u) {
        mounted.splice(mounted.indexOf(u), 1);
        u.destroy();
      }
      draw(root, spec, old);
      if (old) root.removeChild(old);
    });
    root.dataset.charts = String(mounted.filter(function (u) { return root.contains(u.root); }).length);
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
  }

  // New points for charts already drawn (a live page polling "what came after my last point"): each
  // chart's data grows by them, the oldest dropped past `max`. False when a chart is missing or its
  // series changed (a new failure class): the caller then fetches everything and calls update().
  function append(root, specs, max) {
    var mine = mounted.filter(function (u) { return root.contains(u.root); }), whole = true;
    specs.forEach(function (spec) {
      var u = mine.find(function (c) { return c.loadkit.spec.id === spec.id; });
      if (!u || labelsOf(u.loadkit.spec) !== labelsOf(spec)) { whole = false; return; }
      var had = u.loadkit.spec, cut = Math.max(0, had.x.length + spec.x.length - (max || Infinity));
      var next = Object.assign({}, spec, {
        x: had.x.concat(spec.x).slice(cut),
        series: spec.series.map(function (s, i) {
          return Object.assign({}, s, {values: had.series[i].values.concat(s.values).slice(cut)});
        })
      });
      u.loadkit.spec = next;
      u.setData(dataOf(next));
    });
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
    return whole;
  }

  function resize(width) {
    mounted.forEach(function (u) { u.setSize({width: width, height: u.height}); });
  }

  // Printing: charts are canvases, so they are resized to the paper (A4 portrait is ~680 CSS px wide) when
  // print media starts (beforeprint from the browser's print dialog, matchMedia for headless PDF).
  function screenWidth() {
    var first = document.querySelector(".lk-charts");
    return Math.max(320, Math.min((first && first.clientWidth) || 960, 1100));
  }
  window.addEventListener("beforeprint", function () { resize(680); });
  window.addEventListener("afterprint", function () { resize(screenWidth()); });
  if (window.matchMedia) {
    window.matchMedia("print").addEventListener("change", function (e) { resize(e.matches ? 680 : screenWidth()); });
  }

  return {mount: mount, update: update, append: append, charts: mounted, resize: resize};
})();
